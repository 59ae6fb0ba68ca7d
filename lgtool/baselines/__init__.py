"""One module per baseline: an initialization a learngene is compared against, how the bench starts it at a size and
whether the ancestor teaches it.

Every baseline module has the same shape, `BaselineModule` (baselines/base.py), so the bench asks the baseline and
never names one. A new baseline is one module here plus one line in `BASELINES`; its key is the `init` results.json
records in its rows, so a registered name is never changed. The bench reads `BASELINES` at every use.

Baseline modules never import torch at module level (`torch` there is `lgtool.base.lazy.torch`): `lgtool bench
--help` lists them cheaply.
"""

from lgtool.baselines import kd_scratch, scratch, weight_selection, weight_selection_kd
from lgtool.baselines.base import BaselineModule, start_seed

BASELINES: dict[str, BaselineModule] = {
    "scratch": scratch,
    "kd-scratch": kd_scratch,
    "weight-selection": weight_selection,
    "weight-selection+kd": weight_selection_kd,
}
__all__ = ["BASELINES", "BaselineModule", "policy_names", "race_order", "references", "same_start", "start_seed"]


def race_order() -> list[str]:
    """The baselines in the order their curves run at a size: by `RACE_ORDER`, ties in registration order."""
    return sorted(BASELINES, key=lambda name: BASELINES[name].RACE_ORDER)


def same_start(init: str) -> str:
    """The first registered baseline whose start `init`'s is (the same `start` function: the same weights at a
    size), whose top-1 before training the bench measures once; `init` itself for anything else (a learngene)."""
    module = BASELINES.get(init)
    if module is None:
        return init
    return next(name for name, other in BASELINES.items() if other.start is module.start)


def references() -> tuple[str, ...]:
    """The papers' comparison (`REFERENCE`): each learngene is also costed against these alone."""
    return tuple(name for name, module in BASELINES.items() if module.REFERENCE)


def policy_names() -> tuple[str, ...]:
    """Every layer policy some baseline may start with (a row's `layer_policy`)."""
    return tuple(dict.fromkeys(p for module in BASELINES.values() for p in module.POLICIES))
