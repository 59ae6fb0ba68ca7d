"""What every rule shares: the interface a rule module keeps (`RuleModule`), timm's fresh block tensors, and
where a size's own tensors are stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from lgtool.base.arch import Arch
from lgtool.base.lazy import torch


class RuleModule(Protocol):
    """The shape of every module in `lgtool/rules/`: the rest of lgtool asks the rule and never names a method.

    Arguments named `aux` and `target` are `Arch`s (the Aux-Net, a Desc-Net); `tensors` maps the learngene's
    tensor names to tensors; `layer_map` is SWS's stage of every layer, or None. A rule with size-specific
    tensors (`SIZE_SPECIFIC`) also has `resize(rule, tensors, aux, target)` and `trained_scalers(tensors, target)`.
    A rule whose `blocks` of a slice of the layer plan are those layers' blocks, each built on its own, may say so
    (`LAYERWISE = True`): `expand` then builds its Desc-Net a layer at a time as it writes it.
    """

    Rule: type[BaseModel]  # the rule's settings, `method` first (stored in the artifact's metadata)
    OPTIONS: dict[str, RuleOption]  # the `learn` options it takes besides the Aux depth, by name
    LAYER_SOURCE: str  # what each entry of `layer_plan` is
    SIZE_SPECIFIC: tuple[str, ...]  # template roles learned anew for each size (calibration)
    # True if the rule makes its own width only; a narrower one is evenly spaced selection from its Desc-Net
    # at that width (done once for all such rules, in `materialize`).
    NARROWS_BY_SELECTION: bool
    OFFICIAL: str | None  # the repository whose Aux-Net checkpoints `lgtool convert` reads

    def make_rule(self, options: dict, aux_depth: int | None, head_dim: int) -> tuple[BaseModel, int]:
        """(rule, Aux depth) from `learn`'s options."""

    def check_aux(self, rule, arch: Arch) -> None:
        """ValueError if the rule does not fit the Aux-Net (run by the metadata model)."""

    def check_target(self, rule, aux: Arch, depth: int, width: int, layer_map: list[int] | None = None) -> None:
        """One-line InputError if the rule cannot make that size."""

    def template_specs(self, rule, arch: Arch) -> dict[str, tuple[tuple[int, ...], dict]]:
        """The template tensors and what each one is: {name: (shape, role)}."""

    def init_templates(self, rule, arch: Arch, generator=None) -> dict:
        """Fresh templates: the paper's initialization."""

    def seed_templates(self, rule, arch: Arch, layers: list[dict], fresh: dict) -> tuple[dict, dict]:
        """Templates fitted to an ancestor's layers ({slot: tensor} per layer), and {template: what of it was not
        seeded}: a part the ancestor cannot give keeps `fresh` (`init_templates`), so seeding never refuses."""

    def depths(self, rule, arch: Arch) -> tuple[int, int | None]:
        """The Desc-Net depths it can make, (least, most or None): torch-free, for `inspect`."""

    def widths(self, rule, arch: Arch) -> Any:
        """The Desc-Net widths it can make, for `inspect`."""

    def layer_plan(self, rule, aux: Arch, target: Arch, layer_map: list[int] | None = None) -> list:
        """Per layer of `target`, where it comes from, in `LAYER_SOURCE` terms: asked once per Desc-Net, what
        `blocks` builds from and what its folder records."""

    def blocks(self, rule, tensors: dict, aux: Arch, target: Arch, layers: list) -> list[dict]:
        """{slot: tensor} for every layer of `target` as `layers` (its `layer_plan`) says, differentiable in
        `tensors`."""

    def nonblock(self, rule, tensors: dict, aux: Arch, target: Arch) -> dict:
        """The embeddings, final norm and head at `target`'s size."""

    def from_official(self, keys: list[str], model: str | None, options: dict) -> dict | None:
        """Which official checkpoint key becomes which template, the rule and the Aux depth; None if not this
        rule's layout."""


@dataclass(frozen=True)
class RuleOption:
    """One option a rule takes, declared once in its module (`OPTIONS`): `learn`'s settings and flags, and
    `convert`'s where `official` is set, are built from it. Unset (None) means the rule's own default, which
    `make_rule` applies, so `help` says it."""

    type: Any  # what a value is: int, list[int]
    help: str
    lo: int | None = None  # least value (of every item of a list)
    limit: int | None = None  # most value lgtool builds (`setting`'s `limit`)
    flag: bool = True  # False: library only (`init_learngene`, `LearnConfig`), no flag
    official: str | None = None  # where `convert` takes it from when not given: its --help says it

    def setting(self):
        """A `LearnConfig` field (`lgtool.base.settings.setting`), None by default."""
        from lgtool.base.settings import setting

        return setting(None, self.help, lo=self.lo, limit=self.limit, cli=self.flag)


def sized_name(depth: int, width: int, name: str) -> str:
    """Where the size-specific tensor `name` of one trained size is stored."""
    return f"sized.d{depth}w{width}.{name}"


def fresh_slot(slot: str, shape, generator=None):
    """timm's ViT initialization of one block tensor: trunc-normal(0.02) weights, zero biases, LN (1, 0)."""
    if slot.startswith("norm") and slot.endswith(".weight"):
        return torch.ones(shape)
    if slot.endswith(".bias"):
        return torch.zeros(shape)
    return torch.nn.init.trunc_normal_(torch.empty(shape), std=0.02, generator=generator)
