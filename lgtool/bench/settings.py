"""What a bench is told: `BenchConfig`, the settings of the comparison, and `BenchIO`, what it reads and where it
writes. One field per setting, each with its flag, help and range (`lgtool.base.settings`): `lgtool bench`
builds its options from these fields, and a library caller gets the same checks. Torch-free: `--help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lgtool.base.arch import MAX_DEPTH, MAX_EMBED_DIM, parse_width
from lgtool.base.errors import InputError, UsageError
from lgtool.base.settings import check_settings, setting
from lgtool.bench.cost import init_names
from lgtool.training.settings import COMMAND_DEFAULTS


@dataclass
class BenchConfig:
    """The settings of one bench. Those made with `cli=False` are library-only (no flag), checked like the flags
    and named `BenchConfig.<field>` in errors. The field order is that of the `config` results.json records."""

    # The family: its sizes.
    depths: list[int] = setting(help="Desc-Net depths.", lo=1, limit=MAX_DEPTH, default_factory=lambda: [2, 6, 12])
    width: str | int = setting(
        64, "Family (and learngene) width: an integer, or tiny, small, base.", flags=("--width", "-w")
    )
    num_heads: int | None = setting(
        None, "Heads at --width (default: the ancestor's); other widths keep the head dim.", lo=1, limit=MAX_EMBED_DIM
    )
    widths: list[int] = setting(
        help="More widths, e.g. 96,128.", lo=1, limit=MAX_EMBED_DIM, allow_empty=True, default_factory=list
    )
    width_depths: list[int] | None = setting(None, "Depths for --widths (default: all).", lo=1, limit=MAX_DEPTH)
    # The routes, and what each may spend.
    inits: list[str] = setting(
        help="The routes benched.", choices=init_names, default_factory=lambda: list(init_names())
    )
    epochs: int = setting(1, "Fine-tune epochs of each learngene size (0: as expanded); the alternatives' first.", lo=0)
    learn_epochs: int = setting(3, "Distillation epochs of each learngene.", lo=1)
    learn_init: str = setting(
        "ancestor", "Learngenes start from: ancestor (a ViT's layers) or official.", choices=("ancestor", "official")
    )
    learn_family: bool = setting(False, "Distil each learngene for every benched size at once (family-aware).")
    max_epochs: int = setting(
        4, "Each alternative doubles its epochs up to this until it matches the best learngene.", lo=1,
        flags=("--max-epochs", "--scratch-max-epochs"),
    )  # fmt: skip
    min_gain: float = setting(
        0.001, "A curve stops when doubling the epochs gains less than this (validation top-1).", cli=False
    )
    # Every choice is made on a validation split carved from the training images.
    lr_grid: list[float] = setting(
        help="Every init picks its rate from these on validation.", above=0, default_factory=lambda: [5e-4, 2e-3]
    )
    warmup_grid: list[float] = setting(
        help="Warmup epochs to pick from, likewise.", lo=0, default_factory=lambda: [0.2]
    )
    val_fraction: float = setting(
        0.1, "Training images held out for every choice (rates, when a route matches).", above=0, below=1
    )
    learn_lr: float = setting(
        COMMAND_DEFAULTS["learn"]["lr"], "Distillation rate of each learngene (learn's own default).", above=0,
        cli=False,
    )  # fmt: skip
    batch_size: int = setting(128, "Images per step of every training run.", lo=1, cli=False)
    train_samples: int | None = setting(4_000, "Class-balanced training subset.", lo=1)
    all_data: bool = setting(False, "Use every training image (overrides --train-samples).")
    test_samples: int = setting(
        5_000, "Class-balanced subset of the test split the numbers are reported on (10000: all of Fashion-MNIST's).",
        lo=1,
    )  # fmt: skip
    aux_depth: int = setting(8, "Depth of each learngene's Aux-Net.", lo=1, limit=MAX_DEPTH, cli=False)
    # Each learngene's rule takes the options it knows (SWS: stages, WAVE: template size); the rule checks them.
    rule_options: dict = field(default_factory=lambda: {"stages": [2, 2, 2, 2], "template_size": 32})
    calibrate_steps: int = setting(200, "WAVE: steps calibrating a new size's scalers.", lo=1, cli=False)
    calibrate_samples: int = setting(2000, "WAVE: training images those steps draw from.", lo=1, cli=False)
    calibrate_lr: float = setting(1e-2, "WAVE: calibration learning rate.", above=0, cli=False)
    # Every row, learngenes included, is repeated per seed (subset, validation split, init, data order); the verdict
    # is the mean over seeds with its interval. The family is handed over from the first seed.
    seeds: list[int] = setting(
        help="Seeds every row is repeated with (at least 2 for an interval).", lo=0, hi=2**31 - 1,
        default_factory=lambda: [0, 1],
    )  # fmt: skip
    tie_margin: float | None = setting(
        None, "Validation top-1 within which an alternative matches a learngene (default: measured noise).", lo=0,
        below=1,
    )  # fmt: skip

    def __post_init__(self):
        """Every setting in its range, as a one-line UsageError naming its flag, before anything is loaded; then
        what no single setting shows."""
        if self.all_data:
            self.train_samples = None
        check_settings(self)
        if len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"--seeds {','.join(map(str, self.seeds))}: a seed given twice")
        try:  # the width's spelling, and with --num-heads whether they divide it; the ancestor's heads come later
            parse_width(self.width, self.num_heads or 1)
        except InputError as e:
            raise UsageError(f"--width: {e}") from None
        if self.train_samples is not None and self.train_samples * (1 - self.val_fraction) < self.batch_size:
            raise UsageError(
                f"--train-samples {self.train_samples} leaves fewer than one batch of the bench ({self.batch_size} "
                "images) once the validation split is held out"
            )

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


@dataclass
class BenchIO:
    """What a bench reads and where it writes."""

    data: str = setting("fashion-mnist", "fashion-mnist or an ImageFolder path.")
    data_dir: str | None = setting(None, "Where the Fashion-MNIST IDX files are.")
    ancestor: str | None = setting(None, "The teacher (default for fashion-mnist: fmnist-vit, shipped with lgtool).")
    learngenes: list[Path] = setting(
        help="Use this learngene instead of learning one.", flags=("--learngene",), repeat=True, allow_empty=True,
        default_factory=list,
    )  # fmt: skip
    resume: bool = setting(False, "Continue the bench in OUT without redoing finished rows.")
    output: Path = setting(Path("bench"), "Folder for results.json/.md and the plots.", flags=("-o", "--output"))
    no_family: bool = setting(False, "Keep no models in OUT/family/ (large runs); family.json and recipe.sh stay.")

    def __post_init__(self):
        check_settings(self)
