"""TLEG (Xia et al., AAAI 2024): every block tensor is a linear function of the layer's depth.

    W(l) = intercept + ((l - 1) / L) * slope        l = 1..L, L = depth of the net being built

The paper calls the slope theta_A and the intercept theta_B. The Aux-Net (L = aux depth, 12 by default)
and every Desc-Net sample the same segment [0, 1) of the line with step 1/L: a shallower net skips
points, a deeper one interpolates. All 12 slots follow the rule, LayerNorms and biases included.
"""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lgtool.base.arch import SLOTS, WIDTHS
from lgtool.base.errors import InputError, UsageError
from lgtool.base.lazy import torch
from lgtool.rules.base import fresh_slot

TEMPLATES = ("intercept", "slope")
DEFAULT_AUX_DEPTH = 12
OPTIONS = {}  # `learn` sets only the Aux depth
LAYER_SOURCE = "TLEG slope coefficient (l-1)/L"
SIZE_SPECIFIC = ()  # no tensor is learned per Desc-Net size
# Its own width only; a narrower one is evenly spaced selection from the Desc-Net at this width (materialize).
NARROWS_BY_SELECTION = True
# `blocks` of a slice of the layer plan are those layers' blocks: `expand` builds one layer at a time as it writes.
LAYERWISE = True
# `lgtool convert` reads the official Aux-Nets: one linearly expanded module per block tensor,
#   blocks.block.<module>.instances.0.{weight,bias}_{base,ilayer}   (Robbo4729/MaskLG@6e30a5c, modules_with_LE.py)
# `base` is the intercept, `ilayer` the slope: the official W(i) = base + i / L * ilayer, i = 0..L-1.
OFFICIAL = "Robbo4729/MaskLG"
_MODULES = "|".join(re.escape(m) for m in dict.fromkeys(slot.rsplit(".", 1)[0] for slot in SLOTS))
_OFFICIAL_KEY = re.compile(r"blocks\.block\.(" + _MODULES + r")\.instances\.0\.(weight|bias)_(base|ilayer)")
_OFFICIAL_TEMPLATE = {"base": "intercept", "ilayer": "slope"}
# aux_deit_small_patch16_224 (12 layers, DeiT-S's 6 heads); the YuanMou toolbox adds _L24, _L36, _L48.
_OFFICIAL_MODEL = re.compile(r"aux_deit_(tiny|small|base)_patch\d+_\d+(?:_L(\d+))?")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["tleg"] = "tleg"
    coefficient: Literal["(l-1)/L"] = "(l-1)/L"


def make_rule(options: dict, aux_depth: int | None, head_dim: int) -> tuple[Rule, int]:
    return Rule(), aux_depth or DEFAULT_AUX_DEPTH


def check_aux(rule: Rule, arch) -> None:
    """Any Aux-Net fits: the line is sampled at whatever depth it has."""


def check_target(rule: Rule, aux, depth: int, width: int, layer_map: list[int] | None = None) -> None:
    if width != aux.embed_dim:
        raise InputError(
            f"a TLEG learngene makes its Aux width {aux.embed_dim} and narrower widths (by evenly spaced "
            f"selection), not {width}; use a WAVE learngene to widen"
        )
    if layer_map is not None:
        raise InputError("--layer-map picks SWS stages; a TLEG learngene has none")


def coefficient(layer: int, depth: int) -> float:
    """Weight of the slope in layer `layer` (1-based) of a `depth`-layer net."""
    return (layer - 1) / depth


def template_specs(rule: Rule, arch) -> dict:
    return {
        f"{t}.{slot}": (shape, {"template": t, "slot": slot})
        for t in TEMPLATES
        for slot, shape in arch.slot_shapes().items()
    }


def init_templates(rule: Rule, arch, generator=None) -> dict:
    """Official init: intercept and slope of every weight trunc-normal(0.02) independently, biases 0;
    LayerNorm intercept (1, 0) and slope (0, 0), so every layer starts as a plain LayerNorm."""

    out = {}
    for slot, shape in arch.slot_shapes().items():
        out[f"intercept.{slot}"] = fresh_slot(slot, shape, generator)
        slope = fresh_slot(slot, shape, generator)
        out[f"slope.{slot}"] = slope * 0 if slot.startswith("norm") else slope
    return out


def seed_templates(rule: Rule, arch, layers: list[dict], fresh: dict) -> tuple[dict, dict]:
    """Templates from an ancestor's L layers: per slot and element, the least-squares line through
    W(l) at c_l = coefficient(l, L), so expanding to depth L samples the line where the ancestor's layers sit."""

    c = torch.tensor([coefficient(layer, len(layers)) for layer in range(1, len(layers) + 1)])
    dc = c - c.mean()
    out = {}
    for slot in arch.slot_shapes():
        stack = torch.stack([layer[slot] for layer in layers])  # (L, *shape)
        mean = stack.mean(0)
        # One ancestor layer fixes no slope: take it flat (the sum of squares is 0 only then).
        slope = torch.tensordot(dc, stack - mean, dims=1) / dc.square().sum().clamp_min(1e-12)
        out[f"intercept.{slot}"] = mean - c.mean() * slope
        out[f"slope.{slot}"] = slope
    return out, {}  # any number of layers fixes a line


def depths(rule: Rule, arch) -> tuple[int, int | None]:
    return 1, None


def widths(rule: Rule, arch) -> list[int]:
    return [arch.embed_dim]


def layer_plan(rule: Rule, aux, target, layer_map=None) -> list[float]:
    return [coefficient(layer, target.depth) for layer in range(1, target.depth + 1)]


def blocks(rule: Rule, tensors: dict, aux, target, layers: list[float]) -> list[dict]:
    """W(l) = intercept + c_l * slope for every c_l of `layers` (the plan's coefficients)."""
    slots = target.slot_shapes()
    return [{slot: _line(tensors[f"intercept.{slot}"], c, tensors[f"slope.{slot}"]) for slot in slots} for c in layers]


def _line(intercept, c: float, slope):
    """intercept + c * slope, rounded as written (the product first), in one new tensor: the sum goes into the
    product's memory, so no layer of a Desc-Net costs a temporary the size of its weights."""
    out = slope * c
    return out.add_(intercept) if out.dtype == intercept.dtype else intercept + out


def nonblock(rule: Rule, tensors: dict, aux, target) -> dict:
    return {name: tensors[name] for name in target.nonblock_shapes()}


def from_official(keys: list[str], model: str | None, options: dict) -> dict | None:
    """How an official TLEG Aux-Net's block tensors become this rule's templates, or None if `keys` (its
    `blocks.block.*` keys) are not in that layout: {"names": {template: official key}, "rule", "aux_depth",
    "num_heads" (None if `model`, the official model name, does not say)}. Aux depth: `options["aux_depth"]`,
    else the model name's (`_L24`), else the official 12."""
    matches = [_OFFICIAL_KEY.fullmatch(k) for k in keys]
    if not keys or not all(matches):
        return None
    if options.get("stages") is not None:
        raise UsageError("--stages sets SWS stage sizes; a TLEG checkpoint has none")
    names = {f"{_OFFICIAL_TEMPLATE[m[3]]}.{m[1]}.{m[2]}": m[0] for m in matches}
    named = _OFFICIAL_MODEL.fullmatch(model or "")
    depth = options.get("aux_depth") or (int(named[2]) if named and named[2] else DEFAULT_AUX_DEPTH)
    return {"names": names, "rule": Rule(), "aux_depth": depth, "num_heads": WIDTHS[named[1]][1] if named else None}
