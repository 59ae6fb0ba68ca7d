"""SWS (Xia et al., IJCAI 2024): stage-wise weight sharing.

The Aux-Net has M stages; all layers of a stage share one block (default 16 layers in stages
3,3,4,3,3). A Desc-Net of depth L >= M copies each stage's block into a contiguous run of its layers:
L layers split evenly over the stages in order, the remainder going to the earliest stages
(L=12, M=5 -> 3,3,2,2,2), as the official 12-layer map does. At the Aux depth the Aux-Net's own stage
sizes are used, so expansion there reproduces the Aux-Net exactly. An explicit per-layer stage map
overrides both. The Desc-Net's copies are independent tensors afterwards.
"""

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lgtool.base.arch import MAX_DEPTH, SLOTS, first_error
from lgtool.base.errors import InputError, UsageError
from lgtool.base.lazy import torch
from lgtool.rules.base import RuleOption, fresh_slot

DEFAULT_STAGE_SIZES = (3, 3, 4, 3, 3)
OPTIONS = {  # what `learn` may set besides the Aux depth
    "stages": RuleOption(
        list[int], "SWS Aux stage sizes, e.g. 3,3,4,3,3.", official="from args.model, or the official"
    ),
    "num_stages": RuleOption(int, "SWS stages spread evenly over the Aux depth (default 5).", lo=1, flag=False),
}
LAYER_SOURCE = "SWS stage"
SIZE_SPECIFIC = ()  # no tensor is learned per Desc-Net size
# Its own width only; a narrower one is evenly spaced selection from the Desc-Net at this width (materialize).
NARROWS_BY_SELECTION = True
# `lgtool convert` reads the official Aux-Nets: one module list per block tensor, one instance per stage,
#   blocks.block.<module>.instances.<stage>.{weight,bias}       (eddiexia98/SWS, SWS_vit.py)
OFFICIAL = "eddiexia98/SWS"
_MODULES = "|".join(re.escape(m) for m in dict.fromkeys(slot.rsplit(".", 1)[0] for slot in SLOTS))
_OFFICIAL_KEY = re.compile(r"blocks\.block\.(" + _MODULES + r")\.instances\.(\d+)\.(weight|bias)")
# aux_deit_small_patch16_224_L16_33433: depth 16 in stages 3,3,4,3,3; every official Aux-Net runs 12 heads.
_OFFICIAL_MODEL = re.compile(r"aux_deit_(?:tiny|small|base)_patch\d+_\d+_L\d+_\d+")
_STAGES_IN_NAME = re.compile(r"_L(\d+)_(\d+)$")
OFFICIAL_HEADS = 12


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["sws"] = "sws"
    # Aux-Net layers per stage: at least one stage, each of at least one layer, at most MAX_DEPTH in all.
    stage_sizes: Annotated[list[Annotated[int, Field(strict=True)]], Field(min_length=1, max_length=MAX_DEPTH)] = list(
        DEFAULT_STAGE_SIZES
    )
    assignment: Literal["even_remainder_first"] = "even_remainder_first"

    @field_validator("stage_sizes")
    @classmethod
    def _positive(cls, v):
        if any(n <= 0 for n in v):
            raise ValueError("stage sizes must be positive integers")
        if sum(v) > MAX_DEPTH:
            raise ValueError(f"stage sizes add up to {sum(v)}, more than {MAX_DEPTH} layers")
        return v

    @property
    def num_stages(self) -> int:
        return len(self.stage_sizes)


def make_rule(options: dict, aux_depth: int | None, head_dim: int) -> tuple[Rule, int]:
    """`stages` (layers per stage), else `num_stages` spread evenly over `aux_depth`, else the paper's 3,3,4,3,3."""
    stages, num_stages = options.get("stages"), options.get("num_stages", 5)
    if stages is None:
        stages = even_stage_sizes(aux_depth, min(num_stages, aux_depth)) if aux_depth else DEFAULT_STAGE_SIZES
    rule = Rule(stage_sizes=list(stages))
    if aux_depth is not None and aux_depth != sum(rule.stage_sizes):
        raise UsageError(f"--aux-depth {aux_depth} does not match the stage sizes {rule.stage_sizes}")
    return rule, sum(rule.stage_sizes)


def check_aux(rule: Rule, arch) -> None:
    if sum(rule.stage_sizes) != arch.depth:
        raise ValueError(f"rule.stage_sizes {rule.stage_sizes} do not add up to the Aux depth {arch.depth}")


def check_target(rule: Rule, aux, depth: int, width: int, layer_map: list[int] | None = None) -> None:
    if width != aux.embed_dim:
        raise InputError(
            f"an SWS learngene makes its Aux width {aux.embed_dim} and narrower widths (by evenly spaced "
            f"selection), not {width}; use a WAVE learngene to widen"
        )
    check_stage_map(rule, depth, layer_map)


def even_stage_sizes(depth: int, num_stages: int) -> list[int]:
    base, extra = divmod(depth, num_stages)
    return [base + (s < extra) for s in range(num_stages)]


def check_stage_map(rule: Rule, depth: int, layer_map: list[int] | None = None) -> None:
    """One-line InputError if no stage map of `depth` layers can be made (or `layer_map` is not one)."""
    if layer_map is not None:
        if len(layer_map) != depth:
            raise InputError(f"--layer-map has {len(layer_map)} entries but the depth is {depth}")
        bad = [s for s in layer_map if not 0 <= s < rule.num_stages]
        if bad:
            raise InputError(f"--layer-map names stage {bad[0]}; this learngene has stages 0..{rule.num_stages - 1}")
    elif depth < rule.num_stages:
        raise InputError(
            f"depth {depth} is smaller than the {rule.num_stages} SWS stages; "
            f"use --depth >= {rule.num_stages} or give --layer-map"
        )


def stage_map(rule: Rule, depth: int, layer_map: list[int] | None = None) -> list[int]:
    """The stage (0-based) whose block initializes each of the `depth` layers."""
    check_stage_map(rule, depth, layer_map)
    if layer_map is not None:
        return list(layer_map)
    sizes = rule.stage_sizes if depth == sum(rule.stage_sizes) else even_stage_sizes(depth, rule.num_stages)
    return [s for s, n in enumerate(sizes) for _ in range(n)]


def template_specs(rule: Rule, arch) -> dict:
    return {
        f"stage{s}.{slot}": (shape, {"stage": s, "slot": slot})
        for s in range(rule.num_stages)
        for slot, shape in arch.slot_shapes().items()
    }


def init_templates(rule: Rule, arch, generator=None) -> dict:
    return {
        name: fresh_slot(role["slot"], shape, generator) for name, (shape, role) in template_specs(rule, arch).items()
    }


def seed_templates(rule: Rule, arch, layers: list[dict], fresh: dict) -> tuple[dict, dict]:
    """Templates from an ancestor's layers: each stage's block is the mean of the ancestor layers the even
    split puts in that stage (the least-squares constant fit, as TLEG's seed is the least-squares line).
    An ancestor with fewer layers than stages: each stage copies the layer at its relative depth."""

    n = len(layers)
    if n < rule.num_stages:
        members = [[layers[s * n // rule.num_stages]] for s in range(rule.num_stages)]
    else:
        stages = stage_map(rule, n)
        members = [[layer for layer, st in zip(layers, stages, strict=True) if st == s] for s in range(rule.num_stages)]
    seeded = {
        f"stage{s}.{slot}": torch.stack([layer[slot] for layer in members[s]]).mean(0)
        for s in range(rule.num_stages)
        for slot in arch.slot_shapes()
    }
    return seeded, {}  # every stage has a layer to copy


def depths(rule: Rule, arch) -> tuple[int, int | None]:
    return rule.num_stages, None


def widths(rule: Rule, arch) -> list[int]:
    return [arch.embed_dim]


def layer_plan(rule: Rule, aux, target, layer_map: list[int] | None = None) -> list[int]:
    return stage_map(rule, target.depth, layer_map)


def blocks(rule: Rule, tensors: dict, aux, target, layers: list[int]) -> list[dict]:
    """Every layer is its stage's block (`layers`: the stage map)."""
    # Shared references, not copies: the Aux-Net's gradients accumulate on the one stage tensor.
    slots = target.slot_shapes()
    return [{slot: tensors[f"stage{s}.{slot}"] for slot in slots} for s in layers]


def nonblock(rule: Rule, tensors: dict, aux, target) -> dict:
    return {name: tensors[name] for name in target.nonblock_shapes()}


def from_official(keys: list[str], model: str | None, options: dict) -> dict | None:
    """How an official SWS Aux-Net's block tensors become this rule's templates, or None if `keys` (its
    `blocks.block.*` keys) are not in that layout: {"names": {template: official key}, "rule", "aux_depth",
    "num_heads" (None if `model`, the official model name, does not say)}. Stage sizes: `options["stages"]`,
    else the model name's (`..._L16_33433`), else the official 3,3,4,3,3 when there are 5 stages."""
    matches = [_OFFICIAL_KEY.fullmatch(k) for k in keys]
    if not keys or not all(matches):
        return None
    names = {f"stage{int(m[2])}.{m[1]}.{m[3]}": m[0] for m in matches}
    num_stages = 1 + max(int(m[2]) for m in matches)
    named = _STAGES_IN_NAME.search(model or "")
    stages = options.get("stages")
    if stages is None and named and sum(map(int, named[2])) == int(named[1]) and len(named[2]) == num_stages:
        stages = [int(c) for c in named[2]]
    if stages is None and num_stages == len(DEFAULT_STAGE_SIZES):
        stages = list(DEFAULT_STAGE_SIZES)
    if stages is None:
        raise InputError(f"the checkpoint holds {num_stages} SWS stages but does not say their sizes; give --stages")
    if len(stages) != num_stages:
        raise UsageError(f"--stages gives {len(stages)} stage sizes; the checkpoint holds {num_stages} stages")
    if options.get("aux_depth") not in (None, sum(stages)):
        raise UsageError(f"--aux-depth {options['aux_depth']} does not match the stage sizes {stages}")
    try:
        rule = Rule(stage_sizes=stages)
    except ValidationError as e:
        raise UsageError(f"--stages: {first_error(e)}") from None
    official = _OFFICIAL_MODEL.fullmatch(model or "")
    return {"names": names, "rule": rule, "aux_depth": sum(stages), "num_heads": OFFICIAL_HEADS if official else None}
