"""What a training command is told: how to train (`TrainConfig`, shared by `learn` and `finetune`), and what each
command trains (`LearnConfig`, `FinetuneConfig`). One field per setting, each with its flag, help and range
(`lgtool.base.settings`). The CLI builds every flag of `learn` and `finetune` from these fields, so a flag is
declared once and its default is the field's. Torch-free: `--help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path

from lgtool.base.arch import MAX_DEPTH, MAX_EMBED_DIM, MAX_IMG_SIZE, MAX_NUM_CLASSES, check_size_options
from lgtool.base.errors import UsageError
from lgtool.base.lazy import lazy
from lgtool.base.settings import check_settings, setting
from lgtool.family import family_grid, parse_sizes
from lgtool.learngene import check_rule_options
from lgtool.rules import RULES, declared_options

recipe = lazy("lgtool.training.recipe")  # torch and timm: only when a policy is checked


# Settings whose best value differs by command, each chosen on validation for its command (see CHANGELOG):
# `learn` distils a few epochs from a teacher: 4e-3 beats finetune's 5e-4 by 7-9 points (docs/learn-defaults).
COMMAND_DEFAULTS = {"learn": {"lr": 4e-3, "warmup_epochs": 1.0}}


@dataclass
class TrainConfig:
    # Schedule and optimizer (AdamW, linear warmup then cosine per step).
    epochs: int = setting(10, "Training epochs.", lo=1)
    batch_size: int = setting(128, "Images per step on each process (before accumulation).", lo=1)
    lr: float = setting(5e-4, "Peak learning rate (after --lr-base-size scaling).", above=0)
    lr_base_size: int = setting(
        0, "Read --lr as the rate at this many images per step, scaled to the total batch (0: no scaling).",
        lo=0,
    )  # fmt: skip
    lr_base_scale: str = setting(
        "linear", "How --lr-base-size scales: linear (DeiT) or sqrt.", choices=("linear", "sqrt")
    )
    min_lr: float = setting(1e-6, "Learning rate at the end of the cosine.", lo=0)
    weight_decay: float = setting(0.05, "AdamW weight decay (none on biases, norms, embeddings).", lo=0)
    warmup_epochs: float = setting(1.0, "Linear warmup, in epochs.", lo=0)
    accum_steps: int = setting(1, "Gradient accumulation steps.", lo=1)
    # Loss: labels, and distillation from a teacher where there is one.
    smoothing: float = setting(0.1, "Label smoothing.", lo=0, below=1, flags=("--smoothing", "--label-smoothing"))
    kd: str = setting("soft", "Distillation from the teacher: soft, hard or none.", choices=("soft", "hard", "none"))
    alpha: float = setting(1.0, "Weight of the distillation loss (1 = pure KD, official).", lo=0, hi=1)
    tau: float = setting(1.0, "Distillation temperature.", above=0)
    kd_reduction: str = setting(
        "per_logit", "KL reduction: per_logit (official) or batchmean.", choices=("per_logit", "batchmean")
    )
    # Regularization and augmentation (timm's train.py names and meanings).
    drop_path: float = setting(0.0, "Stochastic depth rate.", lo=0, hi=1)
    augment: str = setting(
        "flip", "Augmentation of in-memory data (none on an ImageFolder turns timm's transform off).",
        choices=("none", "flip", "crop-flip"),
    )  # fmt: skip
    aa: str | None = setting(None, "timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1 (default: none).")
    color_jitter: float | None = setting(
        None, "Colour jitter strength (default: timm's 0.4 on ImageFolder data, off in memory; 0: off).", lo=0
    )
    reprob: float = setting(0.0, "Random erasing probability.", lo=0, hi=1)
    remode: str = setting("pixel", "Random erasing fill: const, rand or pixel.", choices=("const", "rand", "pixel"))
    recount: int = setting(1, "Random erasing boxes per image (up to).", lo=1)
    mixup: float = setting(0.0, "Mixup alpha (0: off).", lo=0)
    cutmix: float = setting(0.0, "CutMix alpha (0: off).", lo=0)
    mixup_prob: float = setting(1.0, "Chance of mixing a batch at all, with --mixup or --cutmix.", lo=0, hi=1)
    mixup_switch_prob: float = setting(0.5, "Chance of CutMix instead of Mixup when both are on.", lo=0, hi=1)
    mixup_mode: str = setting("batch", "One mixing factor per batch, pair or elem.", choices=("batch", "pair", "elem"))
    model_ema: bool = setting(False, "Keep an EMA of the weights; the EMA is evaluated and written.")
    model_ema_decay: float = setting(0.9998, "EMA decay per step.", lo=0, below=1)
    # Run.
    workers: int = setting(4, "ImageFolder loader processes.", lo=0)
    seed: int = setting(0, "Seed of initialization, data order and augmentation.", lo=0, hi=2**63 - 1)
    bf16: bool = setting(False, "bf16 autocast.")
    compile: bool = setting(False, "torch.compile the model.")
    save_every: int = setting(0, "Also checkpoint every N steps (0: at epoch ends only).", lo=0)
    # Library only (no flag).
    log_every: int = 20
    max_steps: int | None = None  # stop early (calibration counts steps, not epochs)
    eval_each_epoch: bool = True  # else only after the last one

    def __post_init__(self):
        check_settings(self)
        if self.aa is not None:
            recipe.check_aa(self.aa)  # imports timm: only when a policy is given
        if self.mixing and self.batch_size % 2:
            raise UsageError(
                f"--mixup and --cutmix mix pairs of images: --batch-size must be even, not {self.batch_size}"
            )

    @classmethod
    def for_command(cls, command: str, **settings) -> TrainConfig:
        """The settings `command` runs with by default (its own where `COMMAND_DEFAULTS` has them)."""
        return cls(**{**COMMAND_DEFAULTS.get(command, {}), **settings})

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    @property
    def weight_copies(self) -> int:
        """Copies of the weights a training holds: the weights, their gradients, AdamW's two moments (and the EMA)."""
        return 4 + int(self.model_ema)


# `learn --init`: the papers' initialization, or templates seeded from the ancestor's layers.
LEARN_INITS = ("official", "ancestor")


@dataclass(kw_only=True)
class LearnConfig:
    """What `learn` distils, from which ancestor, into which file: every option of `lgtool learn` but the training
    ones (`TrainConfig`). Valid once built: a bad value, or options that do not fit each other, is a UsageError."""

    ancestor: str = setting(
        help="fmnist-vit (shipped), a timm name or alias (deit_tiny|small|base), or a model folder."
    )
    ancestor_weights: str | None = setting(None, "Weights file for --ancestor.")
    method: str = setting("sws", "The learngene's rule.", choices=tuple(RULES), flags=("--method", "-m"))
    data: str = setting("fashion-mnist", "fashion-mnist or an ImageFolder path.")
    data_dir: str | None = setting(None, "Where the Fashion-MNIST IDX files are.")
    # The learngene's architecture and its rule's options.
    width: str | None = setting(None, "Learngene width (default: the ancestor's).", flags=("--width", "-w"))
    num_heads: int | None = setting(None, "Heads at that width (default width/64).", lo=1, limit=MAX_EMBED_DIM)
    aux_depth: int | None = setting(None, "Aux-Net depth (TLEG/WAVE 12, SWS 16).", lo=1, limit=MAX_DEPTH)
    # here: one field per option the rules declare (`with_rule_options`)
    img_size: int | None = setting(None, "Input size (default: the ancestor's).", lo=1, limit=MAX_IMG_SIZE)
    patch_size: int | None = setting(
        None, "Patch size (default: a ViT ancestor's; else 16, or img/4 below 112 px).", lo=1, limit=MAX_IMG_SIZE
    )
    init: str | None = setting(
        None,
        "Templates seeded from the ancestor's own layers, or the papers' initialization (default: ancestor where "
        "the ancestor is a ViT at least as wide as the learngene).",
        choices=LEARN_INITS,
    )
    keep_order: bool = setting(
        False,
        "SWS/TLEG: keep the channels in their learned order (by default they are reordered by importance on 1,000 "
        "training images, the function unchanged, so that a narrower expand keeps the most important ones).",
    )
    # The sizes distilled for at once (`lgtool.family`).
    family_depths: str | None = setting(
        None, "Distil for this family of depths at once, e.g. 2-12 or 2,4,8 (default: the Aux depth alone)."
    )
    family_widths: str | None = setting(None, "And these widths, e.g. 32,64,128 (WAVE: each gets scalers of its own).")
    family_samples: int = setting(3, "Sizes trained per step: the largest, the smallest and random others.", lo=2)
    train_samples: int | None = setting(None, "A class-balanced training subset.", lo=1)
    val_fraction: float | None = setting(
        None, "Hold out this share of the training images as the validation split the Aux-Net is measured on.",
        above=0, below=1,
    )  # fmt: skip
    # Files.
    checkpoint: Path | None = setting(None, "Checkpoint path (default: OUTPUT with .ckpt).")
    resume: Path | None = setting(None, "Continue from this checkpoint.")
    output: Path = setting(
        Path("learngene.safetensors"), "The learngene file (its folder must exist).", flags=("-o", "--output")
    )
    force: bool = setting(False, "Replace an existing output, and start over instead of refusing an old checkpoint.")
    # Library only: (depth, width) sizes that need not be a grid (None: the Aux depth or width), as the bench
    # gives them; the flags give a grid of --family-depths x --family-widths.
    family: list[tuple] | None = None

    def __post_init__(self):
        check_settings(self)
        self.output = Path(self.output)  # a library caller may name files with strings
        self.checkpoint, self.resume = (None if p is None else Path(p) for p in (self.checkpoint, self.resume))
        check_size_options(self.width, self.num_heads, self.img_size, self.patch_size)
        check_rule_options(self.method, self.aux_depth, self.rule_options)
        if self.keep_order and not RULES[self.method].NARROWS_BY_SELECTION:
            raise UsageError(f"--keep-order: a {self.method.upper()} learngene makes its widths itself, unordered")
        grid = self._grid()  # a size that is no size is a usage error, before any work
        if grid is not None and self.family is not None:
            raise UsageError("give the family as sizes or as --family-depths and --family-widths, not both")

    @property
    def rule_options(self) -> dict:
        """The options given to the learngene's rule (each method takes its own: `lgtool.rules`)."""
        given = {name: getattr(self, name) for name in self.RULE_OPTIONS}
        return {k: v for k, v in given.items() if v is not None}

    @property
    def sizes(self) -> list[tuple] | None:
        """The family's (depth, width) sizes; None: the Aux size alone, as the papers."""
        return self.family if self.family is not None else self._grid()

    def _grid(self) -> list[tuple] | None:
        depths = parse_sizes(self.family_depths, "--family-depths")
        return family_grid(depths, parse_sizes(self.family_widths, "--family-widths"))


def with_rule_options(cls, after: str, rules: dict | None = None) -> type:
    """The settings dataclass `cls` with a field per option the rules declare (`lgtool.rules.RuleOption`), placed
    after field `after` (so in --help too), their names in `RULE_OPTIONS`: a rule brings its own options, and the
    rest of lgtool spells none of them."""
    options = declared_options(rules)
    old = getattr(cls, "RULE_OPTIONS", ())  # a class built here is built anew from its own fields
    own = [(f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
           for f in fields(cls) if f.name not in old]  # fmt: skip
    at = [name for name, *_ in own].index(after) + 1
    added = [(name, opt.type | None, opt.setting()) for name, opt in options.items()]
    # What `dataclass` made for the old fields is made anew (a kept __init__ would not take the new ones).
    made = ("__dict__", "__weakref__", "__annotations__", "__init__", "__repr__", "__eq__", "__hash__")
    namespace = {k: v for k, v in vars(cls).items() if k not in made and not k.startswith(("__dataclass", "__match"))}
    namespace["RULE_OPTIONS"] = tuple(options)
    built = make_dataclass(cls.__name__, own[:at] + added + own[at:], namespace=namespace, kw_only=True)
    built.__module__ = cls.__module__  # its string annotations are read in this module (typing.get_type_hints)
    return built


LearnConfig = with_rule_options(LearnConfig, after="aux_depth")


def training_description(settings, cfg: TrainConfig) -> dict:
    """What a training plan's `describe()` says of its data and schedule (`LearnConfig`, `FinetuneConfig`)."""
    return {
        "data": settings.data,
        "data_dir": settings.data_dir,
        "train_samples": settings.train_samples,
        "val_fraction": settings.val_fraction,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
    }


FINETUNE_INITS = ("pretrained", "scratch")  # `finetune --init`: SRC's weights, or timm's init


@dataclass(kw_only=True)
class FinetuneConfig:
    """What `finetune` trains, on what, into which folder: every option of `lgtool finetune` but the training ones
    (`TrainConfig`). Valid once built: a bad value, or options that do not fit each other, is a UsageError."""

    src: str | None = setting(None, "A Desc-Net or timm hub-layout folder (omit with --init scratch).", argument=True)
    data: str = setting("fashion-mnist", "fashion-mnist or an ImageFolder path.")
    data_dir: str | None = setting(None, "Where the Fashion-MNIST IDX files are.")
    init: str = setting("pretrained", "pretrained (SRC's weights) or scratch (timm's init).", choices=FINETUNE_INITS)
    num_classes: int | None = setting(
        None, "Re-initialize the head for this many classes.", lo=1, limit=MAX_NUM_CLASSES
    )
    # The architecture of a model trained from scratch.
    width: str = setting("tiny", "--init scratch: tiny, small, base or an integer.", flags=("--width", "-w"))
    depth: int = setting(12, "--init scratch: number of blocks.", lo=1, limit=MAX_DEPTH, flags=("--depth", "-d"))
    num_heads: int | None = setting(None, "--init scratch: heads (default width/64).", lo=1, limit=MAX_EMBED_DIM)
    img_size: int | None = setting(None, "--init scratch: input size (default: the data's).", lo=1, limit=MAX_IMG_SIZE)
    patch_size: int | None = setting(None, "--init scratch: patch size.", lo=1, limit=MAX_IMG_SIZE)
    ancestor: str | None = setting(
        None, "Distil from this teacher while training (fmnist-vit, a timm name or a folder)."
    )
    train_samples: int | None = setting(None, "A class-balanced training subset.", lo=1)
    val_fraction: float | None = setting(
        None, "Hold out this share of the training images as a validation split: best/ is chosen on it, as the "
        "bench chooses, and the test split is only reported.", above=0, below=1,
    )  # fmt: skip
    # Files.
    resume: Path | None = setting(None, "Continue from this checkpoint (OUT/checkpoint.ckpt).")
    output: Path = setting(help="Folder for best/, last/, checkpoint and metrics.", flags=("-o", "--output"))
    force: bool = setting(False, "Write into an existing output folder.")

    def __post_init__(self):
        check_settings(self)
        self.output = Path(self.output)  # a library caller may name files with strings
        self.resume = None if self.resume is None else Path(self.resume)
        if self.init == "scratch":
            check_size_options(self.width, self.num_heads, self.img_size, self.patch_size)
