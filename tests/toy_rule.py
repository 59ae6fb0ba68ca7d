"""A fourth method that exists only in the tests: every layer of every net is the one shared block.

It proves the rule interface: registered in `RULES`, it works in `init_learngene`, `expand`, `build_aux`,
`inspect` and artifacts without any other file knowing its name."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from lgtool.base.errors import InputError

OPTIONS = {}
LAYER_SOURCE = "the shared block"
SIZE_SPECIFIC = ()
NARROWS_BY_SELECTION = False
OFFICIAL = None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["shared"] = "shared"


def make_rule(options, aux_depth, head_dim):
    return Rule(), aux_depth or 3


def check_aux(rule, arch):
    pass


def check_target(rule, aux, depth, width, layer_map=None):
    if width != aux.embed_dim or layer_map is not None:
        raise InputError("a shared-block learngene makes its own width only, with no layer map")


def template_specs(rule, arch):
    return {f"block.{slot}": (shape, {"template": "block", "slot": slot}) for slot, shape in arch.slot_shapes().items()}


def init_templates(rule, arch, generator=None):
    from lgtool.rules import fresh_slot

    return {
        name: fresh_slot(role["slot"], shape, generator) for name, (shape, role) in template_specs(rule, arch).items()
    }


def seed_templates(rule, arch, layers, fresh):
    import torch

    return {f"block.{slot}": torch.stack([layer[slot] for layer in layers]).mean(0) for slot in arch.slot_shapes()}, {}


def depths(rule, arch):
    return 1, None


def widths(rule, arch):
    return [arch.embed_dim]


def layer_plan(rule, aux, target, layer_map=None):
    return [0] * target.depth


def blocks(rule, tensors, aux, target, layers):
    return [{slot: tensors[f"block.{slot}"] for slot in target.slot_shapes()} for _ in layers]


def nonblock(rule, tensors, aux, target):
    return {name: tensors[name] for name in target.nonblock_shapes()}


def from_official(keys, model, options):
    return None
