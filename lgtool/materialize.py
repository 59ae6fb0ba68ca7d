"""Learngene + target size -> timm VisionTransformer weights. The one path every command stands on.

- `materialize` builds the state dict of a Desc-Net (differentiable in the learngene tensors);
- `build_aux` is the Aux-Net: a plain timm VisionTransformer whose weights come from `materialize` on
  every forward, so training it trains the templates;
- `expand` is `materialize` once, loaded strictly into a fresh timm model.
Expanding at the Aux size therefore gives exactly the Aux-Net's function.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.func import functional_call

from lgtool.base.arch import Arch, build_vit
from lgtool.base.lazy import timm
from lgtool.family import describe_layers, is_aux_only, sandwich, selection_source, size_key, target_arch
from lgtool.learngene import Learngene
from lgtool.rules import RULES

__all__ = ["Later", "build_aux", "desc_state_dict", "desc_tensors", "expand", "materialize"]


def evenly_spaced(n: int, m: int) -> torch.Tensor:
    """m of n indices, evenly spaced: stride n / m when m divides n, else rounded linspace over the range."""
    if n % m == 0:
        return torch.arange(0, n, n // m)
    return torch.linspace(0, n - 1, m).round().long()


def select(t: torch.Tensor, shape) -> torch.Tensor:
    """`t` cut down to `shape` by evenly spaced indices along every dimension that differs."""
    for dim, (n, m) in enumerate(zip(t.shape, shape, strict=True)):
        if n != m:
            t = t.index_select(dim, evenly_spaced(n, m))
    return t


def materialize(gene: Learngene, target: Arch | None = None, *, layers: list | None = None, tensors=None) -> dict:
    """State dict (timm keys) of the Desc-Net `target` (default: the Aux-Net), differentiable in the gene's
    tensors; `tensors` overrides them (e.g. Parameters). `layers`: the rule's layer plan for `target`
    (`describe_layers`; default: its plan without a layer map). The head is included only when the class count
    matches the learngene's; otherwise timm's init keeps it."""
    tensors = gene.tensors if tensors is None else tensors
    aux, rule, rules = gene.arch, gene.rule, RULES[gene.method]
    target = target or aux
    layers = describe_layers(gene, target) if layers is None else layers
    source = selection_source(gene, target.embed_dim)
    if source is not None:  # the rule's Desc-Net at its own width, then every tensor cut to the target's shape
        built = Arch.checked(target, embed_dim=source, num_heads=aux.num_heads)
        state = materialize(gene, built, layers=layers, tensors=tensors)
        shapes = {f"blocks.{i}.{k}": s for i in range(target.depth) for k, s in target.slot_shapes().items()}
        shapes.update(target.nonblock_shapes())
        return {k: select(v, shapes[k]) for k, v in state.items()}
    blocks = rules.blocks(rule, tensors, aux, target, layers)
    state = {f"blocks.{i}.{slot}": t for i, block in enumerate(blocks) for slot, t in block.items()}
    same_head = target.num_classes == aux.num_classes
    at_aux_size = target if target.img_size == aux.img_size else Arch.checked(target, img_size=aux.img_size)
    nonblock = rules.nonblock(rule, tensors, aux, at_aux_size)  # the position grid is resampled below
    state.update({k: v for k, v in nonblock.items() if same_head or not k.startswith("head.")})
    if target.img_size != aux.img_size:  # another resolution: the same patches, a larger or smaller grid
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], aux, target)
    return state


def resample_pos_embed(pos_embed, aux: Arch, target: Arch):
    """The position embedding on `target`'s patch grid, by timm's own `resample_abs_pos_embed` (bicubic)."""
    grid = [target.img_size // target.patch_size] * 2
    old = [aux.img_size // aux.patch_size] * 2
    prefix = 1 if target.class_token else 0
    return timm.layers.resample_abs_pos_embed(pos_embed, new_size=grid, old_size=old, num_prefix_tokens=prefix)


def desc_state_dict(gene: Learngene, target: Arch | None = None, layers: list | None = None) -> dict:
    """The complete Desc-Net state dict (`desc_tensors`), each tensor with storage of its own."""
    return _own_storage(desc_tensors(gene, target, layers))


@torch.no_grad()
def desc_tensors(gene: Learngene, target: Arch | None = None, layers: list | None = None, *, by_layer=False) -> dict:
    """The complete Desc-Net state dict as the rule builds it: exactly timm's keys, checked, its tensors perhaps
    sharing memory (SWS's layers of one stage, and the learngene's own tensors) or slices of a larger one (WAVE's
    per-layer stacks). `write_descnet` writes it as it is, so the Desc-Net is held once at most. `layers`: the
    rule's layer plan for `target` (`describe_layers`; default: its plan without a layer map).

    With `by_layer`, a rule that builds each layer on its own (`LAYERWISE`) has its first layer built here and
    every other one's tensors given as `Later`s, built a layer at a time when they are asked for (as
    `write_descnet` comes to them): the Desc-Net is never held whole.

    A head for another class count gets timm's init (trunc-normal 0.02, zero bias). No timm model is
    built, so writing a Desc-Net costs little more than saving its tensors."""
    target = target or gene.arch
    layers = describe_layers(gene, target) if layers is None else layers
    # The Aux-Net computes in float32 (`TensorTree`); a Desc-Net from half-precision templates is computed and
    # stored the same way, so that at the Aux size it is the Aux-Net's function, not a rounding of it.
    wide = {k: v.float() if v.is_floating_point() and v.element_size() < 4 else v for k, v in gene.tensors.items()}
    by_layer = by_layer and getattr(RULES[gene.method], "LAYERWISE", False)
    by_layer = by_layer and selection_source(gene, target.embed_dim) is None and len(layers) > 1
    state = materialize(gene, target, layers=layers[:1] if by_layer else layers, tensors=wide)
    if by_layer:
        state.update(_later_layers(gene, target, layers, wide, state))
    if "head.weight" not in state and target.num_classes > 0:
        state["head.weight"] = nn.init.trunc_normal_(torch.empty(target.num_classes, target.embed_dim), std=0.02)
        state["head.bias"] = torch.zeros(target.num_classes)
    expected = {f"blocks.{i}.{k}": s for i in range(target.depth) for k, s in target.slot_shapes().items()}
    expected.update(target.nonblock_shapes())
    wrong = {k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k])} | (
        state.keys() - expected.keys()
    )
    if wrong:  # pitfall P21: never let a renamed or missing key pass silently
        raise RuntimeError(f"materialized weights do not match timm's model: {sorted(wrong)[:3]}")
    return state


class Later:
    """A Desc-Net tensor that is built when it is called for: its dtype and shape are known before."""

    __slots__ = ("_build", "_layer", "_slot", "dtype", "shape")

    def __init__(self, build, layer: int, slot: str, like: torch.Tensor):
        self._build, self._layer, self._slot = build, layer, slot
        self.dtype, self.shape = like.dtype, like.shape

    def __call__(self) -> torch.Tensor:
        return self._build(self._layer)[self._slot]


def _later_layers(gene: Learngene, target: Arch, layers: list, tensors: dict, first: dict) -> dict:
    """Layers 1.. of a `LAYERWISE` rule's Desc-Net as `Later`s shaped like layer 0's tensors in `first`. Built one
    layer at a time: the last layer built is kept until another is asked for, so writing the tensors in the file's
    order (each layer's together) builds every layer once."""
    rules = RULES[gene.method]

    @functools.lru_cache(maxsize=1)
    def build(i: int) -> dict:
        with torch.no_grad():
            return rules.blocks(gene.rule, tensors, gene.arch, target, layers[i : i + 1])[0]

    slots = target.slot_shapes()
    return {
        f"blocks.{i}.{slot}": Later(build, i, slot, first[f"blocks.0.{slot}"])
        for i in range(1, len(layers))
        for slot in slots
    }


def _own_storage(state: dict) -> dict:
    """Clone tensors that share storage (SWS stage copies, slices of WAVE's per-layer stacks, gene tensors)."""
    seen, out = set(), {}
    for k, v in state.items():
        storage = v.untyped_storage()
        shared = storage.data_ptr() in seen or storage.nbytes() != v.numel() * v.element_size() or not v.is_contiguous()
        out[k] = v.detach().clone().contiguous() if shared else v.detach()
        seen.add(storage.data_ptr())
    return out


def expand(gene: Learngene, target: Arch | None = None, *, layer_map: list[int] | None = None, **size) -> nn.Module:
    """A plain timm VisionTransformer initialized from the learngene: at `target`, or at the size that
    `depth=`, `width=`, `num_classes=` ask for (see `target_arch`), or at the Aux size."""
    if target is None:
        target = target_arch(gene, layer_map=layer_map, **size)
    elif size:
        raise TypeError("give a target Arch or size keywords, not both")
    model = build_vit(target)
    model.load_state_dict(desc_tensors(gene, target, describe_layers(gene, target, layer_map)))
    return model.eval()


class TensorTree(nn.Module):
    """Parameters registered under dotted names (`slope.attn.qkv.weight`), so a state dict reads as the gene."""

    def __init__(self, tensors: dict):
        super().__init__()
        for name, t in tensors.items():
            *path, leaf = name.split(".")
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            module.register_parameter(leaf, nn.Parameter(t.detach().clone().float()))


class AuxNet(nn.Module):
    """The Aux-Net: a timm VisionTransformer (weights on the meta device, never used) run with the
    weights the rule builds from the learngene's tensors on every forward.

    With a `family` (Desc-Net sizes, cheapest first; see `lgtool.family`), a training forward instead runs
    `samples` of its sizes drawn by the sandwich rule, each materialized as `expand` makes it, and returns
    their logits stacked (sizes, batch, classes). Evaluation always runs the Aux size. The draws and the
    images each size saw are buffers, so a checkpoint resumes them exactly."""

    def __init__(self, gene: Learngene, drop_path_rate: float = 0.0, family=None, samples: int = 3, seed: int = 0):
        super().__init__()
        self.meta = gene.meta
        self.gene = TensorTree(gene.tensors)
        self.family = None if family is None or is_aux_only(gene, family) else list(family)
        sizes = [gene.arch] + (self.family or [])
        # a list: not a submodule, so their (meta) parameters stay out of .parameters()
        self._vit = [build_vit(a, device="meta", drop_path_rate=drop_path_rate) for a in sizes]
        if self.family:
            self.samples, self.seed = samples, seed
            self.register_buffer("family_draws", torch.zeros((), dtype=torch.int64))
            self.register_buffer("family_images", torch.zeros(len(self.family), dtype=torch.int64))

    @property
    def vit(self) -> nn.Module:
        return self._vit[0]

    def train(self, mode: bool = True):
        super().train(mode)
        for vit in self._vit:
            vit.train(mode)
        return self

    def no_weight_decay(self) -> set[str]:
        """Size-specific coefficients (WAVE's scalers) are not decayed, like timm's position embeddings."""
        size_specific = RULES[self.meta.method].SIZE_SPECIFIC
        return {f"gene.{n}" for n, role in self.meta.tensors.items() if role.get("template") in size_specific}

    def weights(self) -> dict:
        return materialize(Learngene(self.meta, {}), tensors=dict(self.gene.named_parameters()))

    def forward(self, x):
        if self.family is None or not self.training:
            return functional_call(self.vit, self.weights(), (x,))
        picks = sandwich(len(self.family), self.samples, self._draw_generator())
        self.family_draws += 1
        self.family_images[picks] += len(x)
        tensors, shell = dict(self.gene.named_parameters()), Learngene(self.meta, {})
        return torch.stack(
            [
                functional_call(self._vit[1 + i], materialize(shell, self.family[i], tensors=tensors), (x,))
                for i in picks
            ]
        )

    def _draw_generator(self) -> torch.Generator:
        """The sizes of draw n depend on (seed, n) only: the same on every rank and after a resume."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + int(self.family_draws)) % 2**63)

    def family_report(self) -> dict:
        """Per family size, the images it was trained on."""
        return {size_key(a): int(n) for a, n in zip(self.family or [], self.family_images.tolist(), strict=True)}

    def to_learngene(self) -> Learngene:
        tensors = {k: v.detach().to("cpu").clone() for k, v in self.gene.named_parameters()}
        return Learngene(self.meta.model_copy(deep=True), tensors)


def build_aux(gene: Learngene, drop_path_rate: float = 0.0, family=None, samples: int = 3, seed: int = 0) -> AuxNet:
    return AuxNet(gene, drop_path_rate, family, samples, seed)
