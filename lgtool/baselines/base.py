"""What every baseline shares: the interface a baseline module keeps (`BaselineModule`) and the seed a size's fresh
weights are drawn with (`start_seed`)."""

from __future__ import annotations

from typing import Any, Protocol

from lgtool.base.arch import Arch


class BaselineModule(Protocol):
    """The shape of every module in `lgtool/baselines/`: the bench asks the baseline and never names one. Its name is
    its key in `BASELINES`, which results.json records as the `init` of each of its rows.

    `ancestor` is the bench's loaded ancestor (a timm model, a ViT or not); `target` an `Arch`. Fresh weights are
    drawn seeded by `start_seed`, so that a size starts from the same weights in every run with the same seed.
    Baselines whose `start` is the same function start from the same weights: the bench measures that start once.
    """

    DISTILS: bool  # the ancestor teaches while it trains (soft KD, as `learn` distils); its forwards are counted
    # Its curve's place in the race at a size, cheaper first (ties: registration order): once one matches, a dearer
    # one stops at its first budget.
    RACE_ORDER: int
    # The papers' comparison: its whole curve always runs, and each learngene is also costed against it alone
    # (results.json's `cost_vs_scratch`).
    REFERENCE: bool
    POLICIES: tuple[str, ...]  # every layer policy it may start with (a row's `layer_policy`); () for none

    def policies(self, ancestor, depth: int) -> tuple[str, ...]:
        """The layer policies it picks from on validation at `depth`, each a start of its own; () for one start."""

    def start(self, ancestor, target: Arch, seed: int, policy: str | None) -> tuple[Any, dict]:
        """Its timm ViT at `target`'s size before training, and what its row records of that start (weight
        selection: `layers`, `head`); a one-line InputError where it cannot make this size from this ancestor."""

    def expand_args(self, entry: dict, shape: list[str]) -> list[str] | None:
        """recipe.sh: the `lgtool expand` arguments (`-o` aside) that make its start for a family entry of the size
        `shape` (that size's flags), or None where `lgtool finetune --init scratch` makes it."""


def start_seed(depth: int, width: int, seed: int = 0) -> int:
    """The seed a size's fresh weights (a head for other labels, scratch) are drawn with: the same in every run with
    the same `seed`, and at seed 0 the one earlier versions drew with."""
    return depth * 1000 + width + seed * 1_000_003
