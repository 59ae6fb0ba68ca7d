"""What a training run is told: `TrainConfig`, one field per setting, each with its flag, help and range
(`lgtool.format.settings`). The CLI builds every training flag of `learn` and `finetune` from these fields, so
a flag is declared once and its default is the field's. Torch-free: `--help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from lgtool.format.errors import UsageError
from lgtool.format.lazy import lazy
from lgtool.format.settings import check_settings, setting

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
        0, "--lr is the rate at this many images per step; scale it to the total batch (0: no scaling; DeiT: 512).",
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
        "flip", "In-memory data: none, flip or crop-flip. ImageFolder: none turns timm's transform off.",
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
