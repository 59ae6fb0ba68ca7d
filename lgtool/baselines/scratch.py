"""The scratch baseline: timm's initialization at the size, then trained; the papers' comparison."""

from __future__ import annotations

from lgtool.base.arch import Arch, build_vit
from lgtool.base.lazy import torch
from lgtool.baselines.base import start_seed

DISTILS = False
RACE_ORDER = 20
REFERENCE = True  # the papers' comparison: its whole curve always runs
POLICIES = ()


def policies(ancestor, depth: int) -> tuple[str, ...]:
    return ()


def start(ancestor, target: Arch, seed: int, policy: str | None):
    """timm's init at `target`'s size, seeded by the size; nothing of the ancestor."""
    torch.manual_seed(start_seed(target.depth, target.embed_dim, seed))
    return build_vit(target), {}


def expand_args(entry: dict, shape: list[str]) -> None:
    return None  # `lgtool finetune --init scratch` makes it
