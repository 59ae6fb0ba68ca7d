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

from lgtool.arch import Arch, build_vit, parse_width
from lgtool.errors import InputError
from lgtool.learngene import Learngene
from lgtool.rules import RULES, wave


def target_arch(
    gene: Learngene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
) -> Arch:
    """The Desc-Net architecture for a requested size, or a one-line InputError if the gene cannot make it."""
    aux = gene.arch
    depth = aux.depth if depth is None else depth
    if depth <= 0:
        raise InputError(f"depth must be at least 1, got {depth}")
    embed_dim, heads = aux.embed_dim, aux.num_heads
    if width is not None:
        embed_dim, heads = parse_width(width, head_dim=aux.head_dim)
        if gene.method == "wave":
            heads = embed_dim // aux.head_dim  # WAVE keeps the head dim fixed
            wave.check_width(gene.rule, aux, embed_dim)
        elif embed_dim != aux.embed_dim:
            raise InputError(
                f"a {gene.method.upper()} learngene makes width {aux.embed_dim} only (its Aux width), not {embed_dim}; "
                "use a WAVE learngene to change width"
            )
        else:
            heads = aux.num_heads
    if layer_map is not None and gene.method != "sws":
        raise InputError(f"--layer-map applies to SWS learngenes, not {gene.method.upper()}")
    target = Arch.checked(  # validated: a depth or class count beyond the bounds is an ArchError (exit 3)
        aux,
        depth=depth,
        embed_dim=embed_dim,
        num_heads=heads,
        num_classes=aux.num_classes if num_classes is None else num_classes,
    )
    if gene.method == "sws":
        RULES["sws"].stage_map(gene.rule, depth, layer_map)  # validates depth / layer map
    return target


def materialize(
    gene: Learngene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
    tensors: dict | None = None,
) -> dict:
    """State dict (timm keys) of the Desc-Net of this size. `tensors` overrides the gene's (e.g. Parameters).

    The head is included only when the class count matches the learngene's; otherwise timm's init keeps it."""
    tensors = gene.tensors if tensors is None else tensors
    aux, rule = gene.arch, gene.rule
    target = target_arch(gene, depth, width, num_classes, layer_map)
    if gene.method == "wave":
        if (target.depth, target.embed_dim) != (aux.depth, aux.embed_dim):
            tensors = wave.resize(rule, tensors, aux, target)
        layers = wave.blocks(rule, tensors, target, target.depth)
    elif gene.method == "sws":
        layers = RULES["sws"].blocks(rule, tensors, target, target.depth, layer_map)
    else:
        layers = RULES["tleg"].blocks(rule, tensors, target, target.depth)
    state = {f"blocks.{i}.{slot}": t for i, layer in enumerate(layers) for slot, t in layer.items()}
    for name in target.nonblock_shapes():
        if name.startswith("head.") and target.num_classes != aux.num_classes:
            continue
        state[name] = tensors[name]
    return state


def describe_layers(gene: Learngene, depth: int, layer_map: list[int] | None = None) -> list:
    """Per Desc-Net layer, where it comes from: SWS stage, TLEG slope coefficient, WAVE Aux depth position."""
    rule = gene.rule
    if gene.method == "sws":
        return RULES["sws"].describe_layers(rule, depth, layer_map)
    if gene.method == "tleg":
        return RULES["tleg"].describe_layers(rule, depth)
    return wave.describe_layers(rule, depth, gene.arch.depth)


@torch.no_grad()
def desc_state_dict(
    gene: Learngene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
) -> dict:
    """The complete Desc-Net state dict: exactly timm's keys, each tensor with storage of its own.

    A head for another class count gets timm's init (trunc-normal 0.02, zero bias). No timm model is
    built, so writing a Desc-Net costs little more than saving its tensors."""
    target = target_arch(gene, depth, width, num_classes, layer_map)
    state = materialize(gene, target.depth, target.embed_dim, target.num_classes, layer_map)
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


def expand(
    gene: Learngene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
) -> nn.Module:
    """A plain timm VisionTransformer of the requested size, initialized from the learngene."""
    target = target_arch(gene, depth, width, num_classes, layer_map)
    model = build_vit(target)
    model.load_state_dict(desc_state_dict(gene, target.depth, target.embed_dim, target.num_classes, layer_map))
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
    weights the rule builds from the learngene's tensors on every forward."""

    def __init__(self, gene: Learngene, drop_path_rate: float = 0.0):
        super().__init__()
        self.meta = gene.meta
        self.gene = TensorTree(gene.tensors)
        self._vit = [
            build_vit(gene.arch, device="meta", drop_path_rate=drop_path_rate)
        ]  # a list: not a submodule, so its (meta) parameters stay out of .parameters()

    @property
    def vit(self) -> nn.Module:
        return self._vit[0]

    def train(self, mode: bool = True):
        super().train(mode)
        self.vit.train(mode)
        return self

    def weights(self) -> dict:
        return materialize(Learngene(self.meta, {}), tensors=dict(self.gene.named_parameters()))

    def forward(self, x):
        return functional_call(self.vit, self.weights(), (x,))

    def to_learngene(self) -> Learngene:
        tensors = {k: v.detach().to("cpu").clone() for k, v in self.gene.named_parameters()}
        return Learngene(self.meta.model_copy(deep=True), tensors)


def build_aux(gene: Learngene, drop_path_rate: float = 0.0) -> AuxNet:
    return AuxNet(gene, drop_path_rate)
