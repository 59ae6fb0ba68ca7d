"""Learngene + target size -> timm VisionTransformer weights. The one path every command stands on.

- `materialize` builds the state dict of a Desc-Net (differentiable in the learngene tensors);
- `build_aux` is the Aux-Net: a plain timm VisionTransformer whose weights come from `materialize` on
  every forward, so training it trains the templates;
- `expand` is `materialize` once, loaded strictly into a fresh timm model.
Expanding at the Aux size therefore gives exactly the Aux-Net's function.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from lgtool.format.arch import Arch, build_vit, parse_width
from lgtool.format.errors import InputError, UsageError
from lgtool.learngene import Learngene
from lgtool.rules import RULES


def target_arch(
    gene: Learngene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
) -> Arch:
    """The Desc-Net architecture for a requested size, or a one-line InputError if the gene cannot make it.

    Worked out once per command; everything below takes the resulting `Arch`. Another `img_size` keeps the
    patch size: the position embedding is resampled to the new grid (`materialize`). A rule that makes its own
    width only (`NARROWS_BY_SELECTION`) makes narrower ones by evenly spaced selection, keeping the head count;
    a rule that changes width itself keeps the head dim. `num_heads` overrides either: the weights do not depend
    on it, and one that does not divide the width is a UsageError (exit 2)."""
    aux = gene.arch
    depth = aux.depth if depth is None else depth
    if depth <= 0:
        raise InputError(f"depth must be at least 1, got {depth}")
    if num_heads is not None and num_heads <= 0:
        raise UsageError(f"--num-heads must be at least 1, got {num_heads}")
    size = {
        "num_classes": aux.num_classes if num_classes is None else num_classes,
        "img_size": img_size or aux.img_size,
    }
    Arch.checked(aux, depth=depth, **size)  # bounds first: a huge depth never reaches the rule
    embed_dim = aux.embed_dim if width is None else parse_width(width, 1)[0]  # its spelling; heads come below
    selected = selection_source(gene, embed_dim) is not None
    RULES[gene.method].check_target(gene.rule, aux, depth, aux.embed_dim if selected else embed_dim, layer_map)
    if num_heads is not None:
        heads = num_heads
    elif embed_dim == aux.embed_dim or selected:
        heads = aux.num_heads  # selection narrows every head; it does not merge them
    else:
        heads = max(1, embed_dim // aux.head_dim)  # the rule makes the width: the head dim is kept
    if embed_dim % heads:
        given = "--num-heads" if num_heads is not None else "the learngene's head count"
        raise UsageError(
            f"width {embed_dim} is not divisible by {heads} heads ({given}); "
            f"choose --num-heads among the divisors of {embed_dim}"
        )
    return Arch.checked(aux, depth=depth, embed_dim=embed_dim, num_heads=heads, **size)


def selection_source(gene: Learngene, width: int) -> int | None:
    """The width whose Desc-Net a `width`-wide one is selected from, or None if the rule makes `width` itself.

    A rule that makes only its own width (`NARROWS_BY_SELECTION`) makes a narrower one by evenly spaced
    selection from its Desc-Net at the Aux width: the rule weight selection uses (Xu et al., ICLR 2024)."""
    aux = gene.arch
    if RULES[gene.method].NARROWS_BY_SELECTION and width < aux.embed_dim:
        return aux.embed_dim
    return None


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


def materialize(
    gene: Learngene, target: Arch | None = None, *, layer_map: list[int] | None = None, tensors: dict | None = None
) -> dict:
    """State dict (timm keys) of the Desc-Net `target` (default: the Aux-Net), differentiable in the gene's
    tensors; `tensors` overrides them (e.g. Parameters). The head is included only when the class count
    matches the learngene's; otherwise timm's init keeps it."""
    tensors = gene.tensors if tensors is None else tensors
    aux, rule, rules = gene.arch, gene.rule, RULES[gene.method]
    target = target or aux
    source = selection_source(gene, target.embed_dim)
    if source is not None:  # the rule's Desc-Net at its own width, then every tensor cut to the target's shape
        built = target.model_copy(update={"embed_dim": source, "num_heads": aux.num_heads})
        state = materialize(gene, built, layer_map=layer_map, tensors=tensors)
        shapes = {f"blocks.{i}.{k}": s for i in range(target.depth) for k, s in target.slot_shapes().items()}
        shapes.update(target.nonblock_shapes())
        return {k: select(v, shapes[k]) for k, v in state.items()}
    layers = rules.blocks(rule, tensors, aux, target, layer_map)
    state = {f"blocks.{i}.{slot}": t for i, layer in enumerate(layers) for slot, t in layer.items()}
    same_head = target.num_classes == aux.num_classes
    at_aux_size = target if target.img_size == aux.img_size else target.model_copy(update={"img_size": aux.img_size})
    nonblock = rules.nonblock(rule, tensors, aux, at_aux_size)  # the position grid is resampled below
    state.update({k: v for k, v in nonblock.items() if same_head or not k.startswith("head.")})
    if target.img_size != aux.img_size:  # another resolution: the same patches, a larger or smaller grid
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], aux, target)
    return state


def resample_pos_embed(pos_embed, aux: Arch, target: Arch):
    """The position embedding on `target`'s patch grid, by timm's own `resample_abs_pos_embed` (bicubic)."""
    from lgtool.format.compat import import_timm

    import_timm()
    from timm.layers import resample_abs_pos_embed

    grid = [target.img_size // target.patch_size] * 2
    old = [aux.img_size // aux.patch_size] * 2
    prefix = 1 if target.class_token else 0
    return resample_abs_pos_embed(pos_embed, new_size=grid, old_size=old, num_prefix_tokens=prefix)


def describe_layers(gene: Learngene, target: Arch, layer_map: list[int] | None = None) -> list:
    """Per Desc-Net layer, where it comes from (SWS stage, TLEG slope coefficient, WAVE Aux depth position)."""
    return RULES[gene.method].describe_layers(gene.rule, gene.arch, target, layer_map)


@torch.no_grad()
def desc_state_dict(gene: Learngene, target: Arch | None = None, layer_map: list[int] | None = None) -> dict:
    """The complete Desc-Net state dict: exactly timm's keys, each tensor with storage of its own.

    A head for another class count gets timm's init (trunc-normal 0.02, zero bias). No timm model is
    built, so writing a Desc-Net costs little more than saving its tensors."""
    target = target or gene.arch
    # The Aux-Net computes in float32 (`TensorTree`); a Desc-Net from half-precision templates is computed and
    # stored the same way, so that at the Aux size it is the Aux-Net's function, not a rounding of it.
    wide = {k: v.float() if v.is_floating_point() and v.element_size() < 4 else v for k, v in gene.tensors.items()}
    state = materialize(gene, target, layer_map=layer_map, tensors=wide)
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
    return _own_storage(state)


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
    model.load_state_dict(desc_state_dict(gene, target, layer_map))
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
        from lgtool.family import is_aux_only

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
        from lgtool.family import sandwich

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
        from lgtool.family import size_key

        return {size_key(a): int(n) for a, n in zip(self.family or [], self.family_images.tolist(), strict=True)}

    def to_learngene(self) -> Learngene:
        tensors = {k: v.detach().to("cpu").clone() for k, v in self.gene.named_parameters()}
        return Learngene(self.meta.model_copy(deep=True), tensors)


def build_aux(gene: Learngene, drop_path_rate: float = 0.0, family=None, samples: int = 3, seed: int = 0) -> AuxNet:
    return AuxNet(gene, drop_path_rate, family, samples, seed)
