"""The bench's plan: its settings (`BenchConfig`, every one checked before anything is loaded), the family it
benches, and the results.json a resumed bench must agree with."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lgtool.bench.cost import INITS, LEARNGENES
from lgtool.format.arch import MAX_EMBED_DIM, Arch, first_error, parse_width
from lgtool.format.errors import InputError, UsageError
from lgtool.rules import RULES
from lgtool.training.ancestor import shipped_ancestor
from lgtool.training.baselines import LAYER_POLICIES
from lgtool.training.settings import COMMAND_DEFAULTS

# The cheaper alternatives first: once one matches, a dearer one stops at its first budget (`Bench.curve`).
# Inits that start from the same weights at a size (same seed, same cut): their top-1 at 0 epochs is measured once.
SAME_START = {"kd-scratch": "scratch", "weight-selection+kd": "weight-selection"}
CURVE_ORDER = ("weight-selection", "scratch", "weight-selection+kd", "kd-scratch")
DEFAULT_ANCESTORS = {"fashion-mnist": "fmnist-vit"}  # shipped, already trained: the bench never trains one
SCHEMA = "lgtool-bench/3"


@dataclass
class BenchConfig:
    depths: list[int] = field(default_factory=lambda: [2, 6, 12])
    width: str | int = 64  # the family's width, and the learngenes' Aux width
    num_heads: int | None = None  # at `width` (default: the ancestor's head count); other widths keep the head dim
    widths: list[int] = field(default_factory=list)  # more widths
    width_depths: list[int] | None = None  # depths at which `widths` run (default: all depths)
    inits: list[str] = field(default_factory=lambda: list(INITS))
    epochs: int = 1  # fine-tune budget of every learngene (0: as expanded); the alternatives' first budget
    learn_epochs: int = 3
    learn_init: str = "ancestor"  # learngenes seeded from the ancestor's layers (a ViT's), or "official"
    learn_family: bool = False  # distil each learngene for the benched sizes at once (`lgtool.family`)
    max_epochs: int = 4  # the alternatives double their epochs up to this
    min_gain: float = 0.001  # a curve stops when doubling the epochs gains less than this (validation top-1)
    lr_grid: list[float] = field(default_factory=lambda: [5e-4, 2e-3])  # every init picks from it on validation
    warmup_grid: list[float] = field(default_factory=lambda: [0.2])  # warmup epochs, likewise
    val_fraction: float = 0.1  # of the training images, held out for every choice the bench makes
    learn_lr: float = COMMAND_DEFAULTS["learn"]["lr"]  # learn's own default, chosen on validation
    batch_size: int = 128
    train_samples: int | None = 5_000
    aux_depth: int = 8
    # Each learngene's rule takes the options it knows (SWS: stages, WAVE: template size).
    rule_options: dict = field(default_factory=lambda: {"stages": [2, 2, 2, 2], "template_size": 32})
    calibrate_steps: int = 200
    calibrate_samples: int = 2000
    calibrate_lr: float = 1e-2
    seed: int = 0

    def __post_init__(self):
        """Every setting in its range, as a one-line UsageError naming its flag, before anything is loaded."""
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            raise UsageError(f"unknown init {unknown[0]!r}: choose from {', '.join(INITS)}")
        if not self.inits:
            raise UsageError(f"--inits names no init: choose from {', '.join(INITS)}")
        if not self.depths or min(self.depths) < 1:
            raise UsageError("--depths takes positive integers, e.g. 2,4,6,8")
        if min(self.widths, default=1) < 1:
            raise UsageError("--widths takes positive integers, e.g. 96,128")
        if self.width_depths is not None and (not self.width_depths or min(self.width_depths) < 1):
            raise UsageError("--width-depths takes positive integers, e.g. 4,8")
        if self.learn_init not in ("ancestor", "official"):
            raise UsageError(f"unknown --learn-init {self.learn_init!r}: choose ancestor or official")
        if self.epochs < 0:
            raise UsageError(f"--epochs must be at least 0 (0: the family as expanded), got {self.epochs}")
        if self.max_epochs < 1 or self.learn_epochs < 1:
            raise UsageError("--learn-epochs and --max-epochs must be at least 1")
        if self.num_heads is not None and self.num_heads < 1:
            raise UsageError(f"--num-heads must be at least 1, got {self.num_heads}")
        try:  # the width's spelling, and with --num-heads whether they divide it; the ancestor's heads come later
            dim = parse_width(self.width, self.num_heads or 1)[0]
        except InputError as e:
            raise UsageError(f"--width: {e}") from None
        if dim > MAX_EMBED_DIM:
            raise UsageError(f"--width must be at most {MAX_EMBED_DIM}, got {dim}")
        if not (positive(self.val_fraction) and self.val_fraction < 1):
            raise UsageError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.train_samples is not None and self.train_samples < 1:
            raise UsageError(f"--train-samples must be at least 1, got {self.train_samples}")
        if self.train_samples is not None and self.train_samples * (1 - self.val_fraction) < self.batch_size:
            raise UsageError(
                f"--train-samples {self.train_samples} leaves fewer than one batch of the bench ({self.batch_size} "
                "images) once the validation split is held out"
            )
        if not self.lr_grid or not all(positive(lr) for lr in self.lr_grid):
            raise UsageError("--lr-grid takes positive finite learning rates, e.g. 5e-4,2e-3")
        if not self.warmup_grid or not all(positive(w) or w == 0 for w in self.warmup_grid):
            raise UsageError("--warmup-grid takes warmup epochs at least 0, e.g. 0,0.2")
        if self.seed < 0:
            raise UsageError(f"--seed must be at least 0, got {self.seed}")
        # Library-only settings (no flag): named as fields.
        for name in ("learn_lr", "calibrate_lr"):
            if not positive(getattr(self, name)):
                raise UsageError(f"BenchConfig.{name} must be a positive finite number, got {getattr(self, name)}")
        for name in ("batch_size", "aux_depth", "calibrate_steps", "calibrate_samples"):
            if getattr(self, name) < 1:
                raise UsageError(f"BenchConfig.{name} must be at least 1, got {getattr(self, name)}")
        if not math.isfinite(self.min_gain):
            raise UsageError(f"BenchConfig.min_gain must be a finite number, got {self.min_gain}")

    def sizes(self) -> list[tuple[int, int]]:
        """(depth, width) of every Desc-Net benched: all depths at the family width, then the other widths."""
        base = parse_width(self.width, 1)[0]
        extra = [(d, w) for w in self.widths if w != base for d in (self.width_depths or self.depths)]
        return [(d, base) for d in self.depths] + extra

    def curve_epochs(self) -> list[int]:
        """The alternatives' budgets: the fine-tune budget (at least 1), doubled until `max_epochs`."""
        out, e = [], max(1, self.epochs)
        while e <= max(self.max_epochs, max(1, self.epochs)):
            out.append(e)
            e *= 2
        return out


def is_share(x) -> bool:
    return isinstance(x, float) and 0 <= x <= 1


def positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def previous_results(results_path: Path) -> dict:
    """The results.json of the bench being resumed."""
    try:
        previous = json.loads(results_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{results_path}: cannot resume from it ({type(e).__name__}); choose another -o") from None
    if not isinstance(previous, dict):
        raise InputError(f"{results_path}: cannot resume from it (not a JSON object); choose another -o")
    if previous.get("schema") != SCHEMA:
        raise InputError(f"{results_path} was written by another lgtool bench version; choose another -o")
    try:  # a crafted or damaged file is refused in one line, never half-used
        _Resumed.model_validate(previous)
    except ValidationError as e:
        raise InputError(f"{results_path}: cannot resume from it ({first_error(e)}); choose another -o") from None
    return previous


_Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]


class _Row(BaseModel):
    """What resuming reads of a row: its key and the numbers later rows and the report are built on."""

    model_config = ConfigDict(extra="allow", strict=True)
    depth: Annotated[int, Field(ge=1)]
    width: Annotated[int, Field(ge=1)]
    init: Literal[INITS]
    epochs: _Count
    skipped: str | None = None
    val_top1: _Share | None = None
    val_at_init: _Share | None = None
    top1: _Share | None = None
    top1_at_init: _Share | None = None
    train_images: _Count = 0
    teacher_images: _Count = 0
    calibration_images: _Count = 0
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    warmup_epochs: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    layer_policy: Literal[LAYER_POLICIES] | None = None


class _Learned(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    images: _Count | None = None
    teacher_images: _Count | None = None
    student_images: dict[str, _Count] | None = None


class _Resumed(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    ancestor: dict[str, object] = {}
    learngenes: dict[Literal[LEARNGENES], _Learned] = {}
    rows: list[_Row] = []


def ancestor_cost(ancestor: str) -> dict:
    """The ancestor's training images as its folder records them (lgtool's training writes them); paid once."""

    config = Path(shipped_ancestor(ancestor) or ancestor) / "config.json"
    try:
        tune = json.loads(config.read_text())["lgtool"]["finetune"]
        images = tune["epochs"] * tune["train_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"training_images": None, "paid": "unknown: not trained by lgtool"}
    return {"training_images": images, "paid": "already paid: a pretrained model, trained once for every use"}


def check_family(cfg: BenchConfig, ancestor: str, ancestor_num_heads: int | None, given: dict) -> tuple[int, int]:
    """The family's (width, heads): --num-heads, else the ancestor's head count. A UsageError if --width does not
    divide into those heads, or cannot hold a learngene the bench would learn (not `given` ones). With no
    --num-heads and `ancestor_num_heads` None (not known before the ancestor is loaded), heads are None."""
    embed_dim = parse_width(cfg.width, cfg.num_heads or 1)[0]  # its spelling is checked by BenchConfig
    heads = cfg.num_heads or ancestor_num_heads
    if heads is None:
        return embed_dim, None
    if embed_dim % heads:
        raise UsageError(
            f"--width {embed_dim} is not divisible by the {heads} attention heads of --ancestor {ancestor}: "
            f"use a multiple of {heads}, or --num-heads with a head count that divides {embed_dim}"
        )
    aux = Arch(embed_dim=embed_dim, num_heads=heads, depth=cfg.aux_depth)  # what learn() makes, at any image size
    for method in [i for i in cfg.inits if i in LEARNGENES and i not in given]:
        rules = RULES[method]
        options = {k: v for k, v in cfg.rule_options.items() if k in rules.OPTIONS}
        try:
            rule, depth = rules.make_rule(options, cfg.aux_depth, embed_dim // heads)
            rules.check_aux(rule, Arch.checked(aux, depth=depth))
        except (ValueError, UsageError) as e:
            why = first_error(e) if isinstance(e, ValidationError) else str(e)
            raise UsageError(
                f"--width {embed_dim} with {heads} head{'s' if heads > 1 else ''} (head dim {embed_dim // heads}) "
                f"cannot hold the bench's {method.upper()} learngene: {why}; choose another --width or leave "
                f"{method} out of --inits"
            ) from None
    return embed_dim, heads


def row_key(row: dict) -> tuple:
    return row["depth"], row["width"], row["init"], row["epochs"]
