"""The DeiT/timm training recipe, built from timm's own pieces, with timm train.py's flag names and meanings.

The settings are `TrainConfig` fields (`--aa`, `--reprob`, `--mixup`, ...); small functions here turn them
into what the training loop uses: the ImageFolder transform (`train_transform`), the in-memory
augmentations (`tensor_augment`, `random_erasing`), mixup/cutmix (`mixup`, `apply_mixup`), the loss
(`kd_loss`), the learning rate (`scaled_lr`) and the weight EMA (`ema`). One step with the papers' recipe:

    x, y = apply_mixup(mix, x, y)        # y becomes soft (B, C) targets, smoothing folded in
    t = teacher(x)                       # the teacher sees the same *mixed* images (DeiT, TLEG, SWS)
    loss = kd_loss(model(x), t, y, alpha=1.0, tau=1.0, kd="soft", reduction="per_logit")

Decisions (each also stated where it applies):
- `color_jitter=None` keeps each data path's default: on ImageFolder data timm's 0.4 (what
  `create_transform` and timm train.py do), on in-memory data nothing; 0 turns it off; x > 0 is
  ColorJitter(x, x, x). Like timm, color jitter is dropped when `--aa` is on (except the '3a' policies).
- `--aa` and `--color-jitter` also work on in-memory data (Fashion-MNIST): timm's own PIL transforms run per
  image at the stored resolution (`tensor_augment`), seeded from the batch's generator.
- Mixup needs an even per-rank batch (timm pairs image i with image B-1-i): `TrainConfig` rejects an odd
  --batch-size; `apply_mixup` still never crashes on an odd batch (the last image stays unmixed).
- The batch that LR scaling counts is images per optimizer step: batch_size x accum_steps x world_size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lgtool.base.errors import UsageError
from lgtool.base.lazy import timm
from lgtool.training.view import View, seeded

TIMM_COLOR_JITTER = 0.4  # timm's create_transform / train.py default strength
AA_EXAMPLES = "rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, original, v0, 3a"


# The recipe of DeiT and of the TLEG/SWS/LeTs official code (methods reference, section 1.3): TrainConfig(**DEIT).
DEIT = dict(
    aa="rand-m9-mstd0.5-inc1",
    reprob=0.25,
    color_jitter=TIMM_COLOR_JITTER,
    mixup=0.8,
    cutmix=1.0,
    smoothing=0.1,
    lr_base_size=512,
)


def _aa(cfg):
    """The auto-augment spec, or None when off (None, "" or "none")."""
    if cfg.aa is None or (isinstance(cfg.aa, str) and cfg.aa.strip().lower() in ("", "none")):
        return None
    return cfg.aa


def check_aa(spec) -> None:
    """Parse `spec` with the timm factory create_transform would pick for it (rand-/augmix-/AutoAugment);
    "" and "none" mean no policy."""
    if isinstance(spec, str) and spec.strip().lower() in ("", "none"):
        return
    if not isinstance(spec, str):
        raise UsageError(f"--aa must be a timm auto-augment spec ({AA_EXAMPLES}), got {spec!r}")

    if spec.startswith("rand"):
        factory = timm.data.auto_augment.rand_augment_transform
    elif spec.startswith("augmix"):
        factory = timm.data.auto_augment.augment_and_mix_transform
    else:
        factory = timm.data.auto_augment.auto_augment_transform
    try:
        factory(spec, {"translate_const": 100, "img_mean": (128, 128, 128)})
    except Exception as e:  # noqa: BLE001 - timm reports a bad spec by assert, ValueError or KeyError
        reason = f" ({e})" if str(e) else ""
        raise UsageError(f"--aa {spec!r} is not a timm auto-augment spec ({AA_EXAMPLES}){reason}") from None


def _jitter(cfg, default: float | None) -> float | None:
    """The ColorJitter strength to hand timm: `default` when unset, None (no transform) when 0."""
    if cfg.color_jitter is None:
        return default
    return cfg.color_jitter or None


@contextmanager
def _seeded(gen: torch.Generator | None, device=None):
    """Run timm's augmentations (which draw from Python's `random`, NumPy's and torch's global RNGs) seeded
    from `gen`, and leave those global states as they were. Without `gen`, the global RNGs are used as is."""
    if gen is None:
        yield
        return

    cuda = [device] if device is not None and torch.device(device).type == "cuda" else []
    with seeded(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)), cuda):
        yield


def train_transform(cfg, view: View, train: bool = True):
    """timm's ImageFolder transform for `view`: RandomResizedCrop + flip, then `--aa` or color jitter, then
    normalization and random erasing (per image, on CPU in the loader workers), all by `create_transform`.

    With `TrainConfig()` defaults this is exactly the transform lgtool used before the recipe flags (timm's defaults,
    including ColorJitter 0.4). `train=False`: the evaluation transform (resize to size/crop_pct, centre
    crop), unchanged by the cfg."""

    if not train:
        return timm.data.create_transform(
            view.img_size,
            is_training=False,
            mean=view.norm.mean,
            std=view.norm.std,
            crop_pct=view.norm.crop_pct,
            interpolation=view.norm.interpolation,
        )
    return timm.data.create_transform(
        input_size=view.img_size,
        is_training=True,
        auto_augment=_aa(cfg),
        re_prob=cfg.reprob,
        re_mode=cfg.remode,
        re_count=cfg.recount,
        color_jitter=_jitter(cfg, TIMM_COLOR_JITTER),
        interpolation=view.norm.interpolation,
        mean=view.norm.mean,
        std=view.norm.std,
    )


def tensor_augment(
    cfg, mean: Sequence[float] | None = None, interpolation: str = "bilinear"
) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None:
    """`--aa` and `--color-jitter` for in-memory uint8 images (N, C, H, W), C = 1 or 3; None when both are off.

    Each image goes through timm's own PIL stage (the middle part of `create_transform`, so the same rules:
    RandAugment/AugMix/AutoAugment ops, jitter dropped under `--aa`) at its stored resolution, before
    `view.prepare` normalizes and resizes. `mean`: the stored images' channel means in [0, 1] (timm fills
    rotated/shifted-in pixels with it; None: mid-grey). The callable `(x, gen)` returns a new uint8 batch on
    the CPU; with a generator (e.g. `view.batch_generator(seed, epoch, batch)`) the result depends on it alone,
    so a resumed run augments the same way. Slow-ish: a Python loop over images (fine at 28 px)."""
    aa, jitter = _aa(cfg), _jitter(cfg, None)
    if aa is None and jitter is None:
        return None

    stages: dict[tuple[int, int], Callable] = {}

    def stage(size: int, chans: int):
        if (size, chans) not in stages:
            if mean is not None and len(mean) == chans:
                fill = tuple(mean)
            else:
                fill = (sum(mean) / len(mean) if mean else 0.5,) * chans
            _, middle, _ = timm.data.create_transform(
                input_size=size,
                is_training=True,
                separate=True,
                auto_augment=aa,
                color_jitter=jitter,
                interpolation=interpolation,
                mean=fill,
            )
            stages[size, chans] = middle
        return stages[size, chans]

    def augment(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        if c not in (1, 3):
            raise UsageError(f"--aa/--color-jitter on in-memory data need 1- or 3-channel images, got {c} channels")
        x = x.cpu()
        middle = stage(min(h, w), c)
        out = torch.empty_like(x)
        with _seeded(gen):
            for i in range(n):
                img = Image.fromarray((x[i, 0] if c == 1 else x[i].permute(1, 2, 0)).numpy())
                pixels = torch.from_numpy(np.array(middle(img), dtype=np.uint8))
                out[i] = pixels.view(h, w, c).permute(2, 0, 1)
        return out

    return augment


def random_erasing(cfg) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None:
    """`--reprob/--remode/--recount` for a normalized float batch (N, C, H, W) on any device; None when off.

    timm's RandomErasing, as in its transform (1 to `recount` boxes of 2-33% area; `pixel` fills with
    N(0, 1) noise, which is why it runs after normalization). For in-memory data: call it after
    `view.prepare`. ImageFolder data needs no call: `train_transform` already erases. Erases in place and
    returns the batch; with a generator the result depends on it alone (pass one per rank and batch)."""
    if not cfg.reprob:
        return None

    def erase(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        eraser = timm.data.random_erasing.RandomErasing(
            cfg.reprob, mode=cfg.remode, max_count=cfg.recount, device=x.device
        )
        with _seeded(gen, x.device):
            return eraser(x)

    return erase


def mixup(cfg, num_classes: int):
    """timm's `Mixup` for the recipe (label smoothing folded into its soft targets), or None when
    --mixup and --cutmix are both 0. Apply it with `apply_mixup`."""
    if not cfg.mixing:
        return None

    return timm.data.Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.mixup_switch_prob,
        mode=cfg.mixup_mode,
        label_smoothing=cfg.smoothing,
        num_classes=num_classes,
    )


def apply_mixup(mixup_fn, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator | None = None):
    """Mix a batch: (x, int labels) -> (mixed x, soft targets (B, C) that sum to 1).

    timm mixes image i with image B-1-i and asserts an even batch; here an odd batch mixes its first B-1
    images and keeps the last one unmixed with its smoothed one-hot target (`TrainConfig` already
    rejects an odd --batch-size, so this only meets stray batches). May modify `x` in place, as timm does.
    With a generator the mixing depends on it alone (timm draws from NumPy's global RNG otherwise)."""

    with _seeded(gen):
        if len(x) % 2 == 0:
            return mixup_fn(x, y)
        last = timm.data.mixup.mixup_target(y[-1:], mixup_fn.num_classes, 1.0, mixup_fn.label_smoothing)
        if len(x) == 1:
            return x, last
        mixed, soft = mixup_fn(x[:-1], y[:-1])
        return torch.cat([mixed, x[-1:]]), torch.cat([soft, last])


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    alpha: float,
    tau: float,
    kd: str,
    reduction: str,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """(1 - alpha) * label loss + alpha * distillation loss, as in DeiT/TLEG/SWS (`train.distillation_loss`).

    `targets`: int labels (B,) -> CE with `smoothing`, bit-for-bit `train.distillation_loss`; or soft
    targets (B, C) from `apply_mixup` -> soft-target CE (their smoothing is already folded in; `smoothing`
    is ignored). `teacher_logits` must come from the images the student saw, i.e. the *mixed* batch when
    mixing: DeiT and the learngene code feed the teacher the mixed/augmented batch, and the soft KD term
    matches the student to the teacher on those images. kd="soft": KL(p_t || p_s) at temperature `tau`,
    times tau^2, summed and divided by B*C (`reduction="per_logit"`, the official one) or by B
    ("batchmean"); kd="hard": CE to the teacher's argmax. No teacher, kd="none" or alpha=0: the label loss."""

    if targets.is_floating_point():
        if targets.shape != student_logits.shape:
            raise ValueError(f"soft targets {tuple(targets.shape)} do not match logits {tuple(student_logits.shape)}")

        base = timm.loss.SoftTargetCrossEntropy()(student_logits, targets)
    else:
        base = F.cross_entropy(student_logits, targets, label_smoothing=smoothing)
    if teacher_logits is None or kd == "none" or alpha == 0:
        return base
    if kd == "hard":
        distil = F.cross_entropy(student_logits, teacher_logits.argmax(-1))
    elif kd == "soft":
        if reduction not in ("per_logit", "batchmean"):
            raise UsageError(f"unknown --kd-reduction {reduction!r}: choose per_logit, batchmean")
        kl = F.kl_div(
            F.log_softmax(student_logits / tau, -1),
            F.log_softmax(teacher_logits / tau, -1),
            reduction="sum",
            log_target=True,
        )
        count = student_logits.numel() if reduction == "per_logit" else student_logits.shape[0]
        distil = kl * tau * tau / count
    else:
        raise UsageError(f"unknown --kd {kd!r}: choose soft, hard, none")
    return (1 - alpha) * base + alpha * distil


def global_batch(batch_size: int, accum_steps: int = 1, world_size: int = 1) -> int:
    """Images per optimizer step: the batch LR scaling counts (timm train.py's `global_batch_size`)."""
    return batch_size * accum_steps * world_size


def scaled_lr(lr: float, global_batch: int, cfg) -> float:
    """The LR to train with: `lr` is the LR at `cfg.lr_base_size` images per step (timm's --lr-base-size).

    linear: lr * global_batch / lr_base_size; sqrt: lr * sqrt(global_batch / lr_base_size); lr_base_size
    None or 0: lr unchanged.

    `global_batch` = batch_size x accum_steps x world_size (`global_batch()`): images per optimizer step,
    as timm train.py counts them. DeiT and the TLEG/SWS main.py compute batch x world / 512 without an
    accumulation factor (pitfall P10; the methods reference, section 1.3, writes it in), but the official runs
    (4 GPUs x 128) accumulate nothing, so both definitions give factor 1 there. We count accumulation because
    an optimizer step then does see accum_steps times more images: `--batch-size 128 --accum-steps 4` on one
    GPU reproduces the official 512-image step and gets the official LR, where the DeiT formula would quarter it.
    timm picks sqrt by default for Adam-type optimizers; the DeiT/learngene recipe is linear, our default.
    """
    if not cfg.lr_base_size:
        return lr
    if global_batch < 1:
        raise UsageError(f"the global batch must be at least 1 image, got {global_batch}")
    ratio = global_batch / cfg.lr_base_size
    return lr * (math.sqrt(ratio) if cfg.lr_base_scale == "sqrt" else ratio)


def ema(cfg, model: nn.Module):
    """timm's `ModelEmaV3(model, decay=--model-ema-decay)`, or None without --model-ema.

    Create it from the model *after* its initial weights are in place (learngene expansion, checkpoint
    load) and after `.to(device)`, before wrapping in DDP: the official TLEG/SWS code made its EMA from the
    random init, which at decay 0.99996 and 10-40 epochs leaves the EMA useless (pitfall P9). Call
    `.update(model, step=...)` after each optimizer step and evaluate `.module`."""
    if not cfg.model_ema:
        return None

    return timm.utils.ModelEmaV3(model, decay=cfg.model_ema_decay)
