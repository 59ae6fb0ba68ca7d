"""Learngenes seeded from the ancestor: templates fitted to the ancestor's own layers instead of the
papers' fresh initialization, before distillation starts.

The rule module does the fitting (`seed_templates`: SWS stage means, TLEG least-squares line, WAVE
nearest-Kronecker templates); this module only reads the ancestor's timm state dict, narrows it to the
learngene's width by the evenly spaced selection weight selection uses, and copies the non-block tensors.
"""

from __future__ import annotations

import re

import torch

from lgtool.base.errors import InputError
from lgtool.baselines.weight_selection import select
from lgtool.learngene import Learngene
from lgtool.rules import rule_module


def seed_from_ancestor(gene: Learngene, ancestor_state: dict) -> Learngene:
    """`gene` (fresh from `init_learngene`) with its templates, and every non-block tensor the ancestor has
    in a selectable shape, taken from `ancestor_state` (a timm ViT state dict at least as wide)."""
    arch = gene.arch
    state = {k: v.detach().to("cpu", torch.float32) for k, v in ancestor_state.items()}
    layers = [_layer(state, i, arch.slot_shapes()) for i in range(_depth(state))]
    tensors = dict(gene.tensors)
    seeded, unseeded = rule_module(gene.method).seed_templates(gene.rule, arch, layers, gene.tensors)
    tensors.update(seeded)
    width, anc_width = arch.embed_dim, state["blocks.0.norm1.weight"].shape[0]
    fresh = []
    for name, shape in arch.nonblock_shapes().items():
        if name in state and _selectable(state[name].shape, shape, anc_width, width):
            tensors[name] = select(state[name], shape).clone()
        else:
            fresh.append(name)
    meta = gene.meta.model_copy(deep=True)
    meta.provenance.update(init="ancestor", seeded={"ancestor_depth": len(layers), "ancestor_width": anc_width})
    if fresh:
        meta.provenance["seeded"]["fresh_init"] = fresh  # no counterpart in the ancestor (patch, tokens, classes)
    if unseeded:  # templates the ancestor could seed only in part: the rest is the paper's initialization
        meta.provenance["seeded"]["partly"] = unseeded
    return Learngene(meta, {k: v.contiguous() for k, v in tensors.items()})


def seed_note(gene: Learngene) -> str | None:
    """One line on the templates the ancestor seeded only in part (`seed_from_ancestor`), or None."""
    partly = gene.meta.provenance.get("seeded", {}).get("partly")
    if not partly:
        return None
    parts = "; ".join(f"{name}: {what}" for name, what in partly.items())
    return f"seeded from the ancestor in part, the rest from the paper's initialization: {parts}"


def _depth(state: dict) -> int:
    ids = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not ids:
        raise InputError("seeding needs a timm VisionTransformer ancestor (no blocks.N.* weights found)")
    return max(ids) + 1


def _layer(state: dict, i: int, shapes: dict) -> dict:
    """Block `i` of the ancestor, every slot cut down to the learngene's shape."""
    layer = {}
    for slot, shape in shapes.items():
        key = f"blocks.{i}.{slot}"
        if key not in state:
            raise InputError(f"ancestor has no {key}: seeding needs a timm VisionTransformer ancestor")
        t = state[key]
        if t.dim() != len(shape) or any(n < m for n, m in zip(t.shape, shape, strict=True)):
            raise InputError(
                f"seeding needs an ancestor at least as wide as the learngene: {key} is {list(t.shape)}, "
                f"the learngene needs {list(shape)}"
            )
        layer[slot] = select(t, shape)
    return layer


def _selectable(have, want, anc_width: int, width: int) -> bool:
    # Only the width axes may shrink: another patch size, token count or class count has no counterpart.
    if len(have) != len(want):
        return False
    return all(a == b or (a, b) == (anc_width, width) for a, b in zip(have, want, strict=True))
