"""The DeiT/timm recipe module: LR scaling, timm transforms, mixup targets, losses, validation, scripts."""

import math
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lgtool.base.errors import UsageError
from lgtool.base.normalization import Normalization
from lgtool.training.data import View, batch_generator
from lgtool.training.recipe import (
    DEIT,
    apply_mixup,
    ema,
    global_batch,
    kd_loss,
    mixup,
    random_erasing,
    scaled_lr,
    tensor_augment,
    train_transform,
)
from lgtool.training.settings import TrainConfig


def reference_loss(student, teacher, labels, *, kd, alpha, tau, reduction, smoothing):
    """The official DeiT/TLEG/SWS loss for integer labels, written out."""
    base = F.cross_entropy(student, labels, label_smoothing=smoothing)
    if teacher is None or kd == "none" or alpha == 0:
        return base
    if kd == "hard":
        distil = F.cross_entropy(student, teacher.argmax(-1))
    else:
        kl = F.kl_div(
            F.log_softmax(student / tau, -1), F.log_softmax(teacher / tau, -1), reduction="sum", log_target=True
        )
        distil = kl * tau * tau / (student.numel() if reduction == "per_logit" else student.shape[0])
    return (1 - alpha) * base + alpha * distil


RGB = View(32, 3, Normalization(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))
SCRIPTS = Path(__file__).resolve().parent.parent / "examples" / "imagenet"


# --- learning rate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lr, batch, accum, world, base, scale, expected",
    [
        (5e-4, 128, 2, 2, 512, "linear", 5e-4),  # 512 images per step: the official factor 1
        (5e-4, 128, 1, 4, 512, "linear", 5e-4),  # the official 4 GPUs x 128
        (5e-4, 64, 1, 1, 512, "linear", 6.25e-5),
        (5e-4, 128, 4, 1, 512, "linear", 5e-4),  # one GPU emulating 512 by accumulation
        (5e-4, 1024, 1, 2, 512, "linear", 2e-3),
        (5e-4, 128, 1, 1, 512, "sqrt", 2.5e-4),  # sqrt(1/4) = 1/2
        (5e-4, 256, 4, 2, 512, "sqrt", 1e-3),  # sqrt(4) = 2
        (5e-4, 64, 1, 1, None, "linear", 5e-4),  # no --lr-base-size: no scaling
        (5e-4, 64, 1, 1, 0, "sqrt", 5e-4),  # 0 also means no scaling (TrainConfig's default)
    ],
)
def test_scaled_lr_matches_hand_computed_values(lr, batch, accum, world, base, scale, expected):
    recipe = TrainConfig(lr_base_size=base or 0, lr_base_scale=scale)
    assert scaled_lr(lr, global_batch(batch, accum, world), recipe) == pytest.approx(expected, rel=1e-12)


def test_global_batch_counts_accumulation_and_ranks():
    assert global_batch(128) == 128
    assert global_batch(128, accum_steps=2, world_size=2) == 512


# --- ImageFolder transform ---------------------------------------------------------------------------------


def _kinds(transform) -> set[str]:
    return {type(t).__name__ for t in transform.transforms}


@pytest.mark.parametrize(
    "recipe, present, absent",
    [
        (TrainConfig(), {"ColorJitter"}, {"RandAugment", "RandomErasing"}),  # timm's default jitter 0.4
        (TrainConfig(color_jitter=0), set(), {"ColorJitter", "RandAugment", "RandomErasing"}),
        (TrainConfig(color_jitter=0.3), {"ColorJitter"}, {"RandAugment"}),
        (
            TrainConfig(aa="rand-m9-mstd0.5-inc1"),
            {"RandAugment"},
            {"ColorJitter", "RandomErasing"},
        ),  # timm drops jitter
        (TrainConfig(reprob=0.25), {"RandomErasing", "ColorJitter"}, {"RandAugment"}),
        (TrainConfig(**DEIT), {"RandAugment", "RandomErasing"}, {"ColorJitter"}),
        (TrainConfig(aa="augmix-m5-w4-d2", color_jitter=0), {"AugMixAugment"}, {"RandAugment"}),
        (TrainConfig(aa="original", color_jitter=0), {"AutoAugment"}, {"RandAugment"}),
        (TrainConfig(aa="none"), {"ColorJitter"}, {"RandAugment", "AutoAugment"}),
    ],
)
def test_train_transform_holds_timms_pieces_when_asked(recipe, present, absent):
    kinds = _kinds(train_transform(recipe, RGB))
    assert present <= kinds
    assert not absent & kinds
    assert "RandomResizedCropAndInterpolation" in kinds


def test_train_transform_settings_reach_timm():
    tf = train_transform(TrainConfig(aa="rand-m7-n3", reprob=0.5, remode="const", recount=3, color_jitter=0), RGB)
    erase = next(t for t in tf.transforms if type(t).__name__ == "RandomErasing")
    assert (erase.probability, erase.mode, erase.max_count) == (0.5, "const", 3)
    augment = next(t for t in tf.transforms if type(t).__name__ == "RandAugment")
    assert augment.num_layers == 3 and augment.ops[0].magnitude == 7


def test_default_recipe_is_the_transform_lgtool_used_before():
    from timm.data import create_transform

    for train in (True, False):
        before = create_transform(
            RGB.img_size,
            is_training=train,
            mean=RGB.norm.mean,
            std=RGB.norm.std,
            crop_pct=RGB.norm.crop_pct,
            interpolation=RGB.norm.interpolation,
        )
        assert repr(train_transform(TrainConfig(), RGB, train=train)) == repr(before)


def test_eval_transform_ignores_the_recipe():
    assert repr(train_transform(TrainConfig(**DEIT), RGB, train=False)) == repr(
        train_transform(TrainConfig(), RGB, train=False)
    )


def test_train_transform_runs_on_an_image():
    img = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))
    out = train_transform(TrainConfig(**DEIT), RGB)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


# --- mixup -------------------------------------------------------------------------------------------------


def _smoothed(y, classes, smoothing):
    return F.one_hot(y, classes).float() * (1 - smoothing) + smoothing / classes


def test_mixup_off_gives_none():
    assert mixup(TrainConfig(), 10) is None
    assert mixup(TrainConfig(mixup=0.0, cutmix=0.0, smoothing=0.3), 10) is None


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_soft_targets_sum_to_one_with_smoothing_folded_in(smoothing):
    classes, n = 10, 8
    fn = mixup(TrainConfig(mixup=0.8, smoothing=smoothing), classes)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 9])
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()  # image i is all i
    mixed, soft = apply_mixup(fn, x, y, batch_generator(0, 0, 0))
    assert soft.shape == (n, classes)
    torch.testing.assert_close(soft.sum(1), torch.ones(n))
    assert soft.min() >= smoothing / classes - 1e-7
    # batch mode: image i = lam * i + (1 - lam) * (n - 1 - i); the targets mix the same way
    lam = ((mixed[0, 0, 0, 0] - (n - 1)) / (0 - (n - 1))).item()
    assert 0 <= lam <= 1
    expected = lam * _smoothed(y, classes, smoothing) + (1 - lam) * _smoothed(y.flip(0), classes, smoothing)
    torch.testing.assert_close(soft, expected, rtol=1e-5, atol=1e-5)


def test_cutmix_targets_sum_to_one():
    fn = mixup(TrainConfig(cutmix=1.0, smoothing=0.1), 5)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    _, soft = apply_mixup(fn, x, y, batch_generator(1, 0, 0))
    torch.testing.assert_close(soft.sum(1), torch.ones(6))


def test_apply_mixup_odd_batch_keeps_the_last_image_unmixed():
    classes = 4
    fn = mixup(TrainConfig(mixup=1.0, cutmix=1.0, smoothing=0.1), classes)
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 3, 1])
    last = x[-1].clone()
    mixed, soft = apply_mixup(fn, x, y, batch_generator(0, 0, 3))
    assert mixed.shape == x.shape and soft.shape == (5, classes)
    torch.testing.assert_close(mixed[-1], last)
    torch.testing.assert_close(soft[-1], _smoothed(y[-1:], classes, 0.1)[0])
    torch.testing.assert_close(soft.sum(1), torch.ones(5))
    single, target = apply_mixup(fn, x[:1].clone(), y[:1])
    assert single.shape == (1, 1, 6, 6) and target.shape == (1, classes)


def test_apply_mixup_is_reproducible_from_its_generator_and_leaves_global_rngs_alone():
    fn = mixup(TrainConfig(mixup=0.8, cutmix=1.0), 10)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    a = apply_mixup(fn, x.clone(), y, batch_generator(3, 1, 2))
    b = apply_mixup(fn, x.clone(), y, batch_generator(3, 1, 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


# --- losses ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kd", ["soft", "hard", "none"])
@pytest.mark.parametrize("reduction", ["per_logit", "batchmean"])
@pytest.mark.parametrize("alpha, tau, smoothing", [(1.0, 1.0, 0.1), (0.5, 2.0, 0.0), (0.0, 1.0, 0.1), (0.3, 0.5, 0.2)])
def test_kd_loss_with_int_labels_is_the_official_loss(kd, reduction, alpha, tau, smoothing):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g)
    y = torch.randint(0, 11, (5,), generator=g)
    kw = dict(alpha=alpha, tau=tau, kd=kd, reduction=reduction, smoothing=smoothing)
    for t in (teacher, None):
        assert torch.equal(kd_loss(student, t, y, **kw), reference_loss(student, t, y, **kw))


def test_kd_loss_with_soft_targets_uses_soft_target_cross_entropy():
    from timm.loss import SoftTargetCrossEntropy

    student, teacher = torch.randn(4, 6), torch.randn(4, 6)
    soft = torch.softmax(torch.randn(4, 6), -1)
    label_only = kd_loss(student, teacher, soft, alpha=0.0, tau=1.0, kd="soft", reduction="per_logit")
    torch.testing.assert_close(label_only, SoftTargetCrossEntropy()(student, soft))
    # one-hot soft targets are the int labels (their smoothing is already in the targets)
    y = torch.tensor([0, 5, 2, 2])
    kw = dict(alpha=0.4, tau=2.0, kd="soft", reduction="batchmean")
    torch.testing.assert_close(
        kd_loss(student, teacher, F.one_hot(y, 6).float(), smoothing=0.3, **kw), kd_loss(student, teacher, y, **kw)
    )
    # alpha = 1 (official Aux setting): pure distillation, the targets do not matter
    pure = dict(alpha=1.0, tau=1.0, kd="soft", reduction="per_logit")
    torch.testing.assert_close(kd_loss(student, teacher, soft, **pure), kd_loss(student, teacher, y, **pure))


def test_kd_loss_needs_the_teacher_to_see_the_mixed_batch():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()
    with torch.no_grad():
        teacher[1].weight.mul_(10)  # confident logits: a visible KL when the inputs differ
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    student.load_state_dict(teacher.state_dict())  # a student that already matches its teacher
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    clean = x.clone()
    mixed, soft = apply_mixup(mixup(TrainConfig(mixup=1.0), 5), x, y, batch_generator(0, 0, 0))
    assert not torch.allclose(mixed, clean)
    kw = dict(alpha=1.0, tau=1.0, kd="soft", reduction="per_logit")
    with torch.no_grad():
        right = kd_loss(student(mixed), teacher(mixed), soft, **kw)
        wrong = kd_loss(student(mixed), teacher(clean), soft, **kw)
    assert right.abs() < 1e-6  # KL between identical functions on the same images
    assert wrong > 1e-3


def test_kd_loss_rejects_mismatched_soft_targets():
    with pytest.raises(ValueError, match="soft targets"):
        kd_loss(torch.randn(4, 6), None, torch.rand(4, 5), alpha=1.0, tau=1.0, kd="soft", reduction="per_logit")


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("reprob", 1.5, "--reprob"),
        ("reprob", -0.1, "--reprob"),
        ("reprob", math.nan, "--reprob"),
        ("mixup_prob", 2.0, "--mixup-prob"),
        ("mixup_switch_prob", -1.0, "--mixup-switch-prob"),
        ("mixup_switch_prob", math.inf, "--mixup-switch-prob"),
        ("mixup", -0.8, "--mixup"),
        ("mixup", math.inf, "--mixup"),
        ("mixup", math.nan, "--mixup"),
        ("cutmix", -1.0, "--cutmix"),
        ("cutmix", -math.inf, "--cutmix"),
        ("color_jitter", -0.4, "--color-jitter"),
        ("color_jitter", math.nan, "--color-jitter"),
        ("smoothing", 1.0, "--smoothing"),
        ("smoothing", -0.1, "--smoothing"),
        ("smoothing", math.inf, "--smoothing"),
        ("model_ema_decay", 1.0, "--model-ema-decay"),
        ("model_ema_decay", math.nan, "--model-ema-decay"),
        ("recount", 0, "--recount"),
        ("lr_base_size", -512, "--lr-base-size"),
        ("lr_base_scale", "log", "--lr-base-scale"),
        ("remode", "noise", "--remode"),
        ("mixup_mode", "image", "--mixup-mode"),
        ("aa", "rand-m9-q2", "--aa"),  # unknown RandAugment section
        ("aa", "randaugment", "--aa"),
        ("aa", "v9", "--aa"),  # unknown AutoAugment policy
        ("aa", "augmix-q3", "--aa"),
        ("aa", "original-foo7", "--aa"),
        ("aa", "rand-m9.5", "--aa"),  # magnitude must be an integer
        ("aa", 9, "--aa"),
    ],
)
def test_validate_rejects_bad_values_in_one_line_naming_the_flag(field, value, flag):
    with pytest.raises(UsageError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(flag + " ") and "\n" not in message
    assert info.value.exit_code == 2


def test_validate_message_reads_like_the_spec():
    with pytest.raises(UsageError, match=re.escape("--reprob must be at least 0 and at most 1, got 1.5")):
        TrainConfig(reprob=1.5)


@pytest.mark.parametrize(
    "aa", ["rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5", "rand-m7-n3-mstd1", "augmix-m5-w4-d2", "original", "v0", "3a", ""]
)
def test_validate_accepts_timm_auto_augment_specs(aa):
    TrainConfig(aa=aa)


def test_the_deit_recipe_is_a_valid_config():
    cfg = TrainConfig(**DEIT, batch_size=128)
    settings = (cfg.aa, cfg.reprob, cfg.mixup, cfg.cutmix, cfg.smoothing, cfg.lr_base_size)
    assert settings == ("rand-m9-mstd0.5-inc1", 0.25, 0.8, 1.0, 0.1, 512)


def test_validate_asks_for_an_even_batch_only_when_mixing():
    with pytest.raises(UsageError, match=r"^--mixup and --cutmix mix pairs of images: --batch-size must be even"):
        TrainConfig(cutmix=1.0, batch_size=127)
    TrainConfig(mixup=0.8, batch_size=128)
    TrainConfig(reprob=0.25, batch_size=127)


# --- in-memory augmentation --------------------------------------------------------------------------------


def _gray(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


def test_tensor_augment_is_none_when_off():
    assert tensor_augment(TrainConfig()) is None  # color jitter unset: no default on in-memory data
    assert tensor_augment(TrainConfig(color_jitter=0, reprob=0.5, mixup=0.8)) is None


@pytest.mark.parametrize(
    "recipe", [TrainConfig(aa="rand-m9-mstd0.5-inc1"), TrainConfig(color_jitter=0.4), TrainConfig(aa="augmix-m5-w4-d2")]
)
def test_tensor_augment_applies_timm_per_image_reproducibly(recipe):
    x = _gray()
    before = x.clone()
    augment = tensor_augment(recipe, mean=(0.286,))
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    a = augment(x, batch_generator(0, 1, 2))
    b = augment(x, batch_generator(0, 1, 2))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(x, before)  # a new batch; the input is untouched
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_tensor_augment_handles_rgb_and_rejects_other_channel_counts():
    augment = tensor_augment(TrainConfig(aa="rand-m9-mstd0.5-inc1"))
    rgb = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    assert augment(rgb, None).shape == rgb.shape
    with pytest.raises(UsageError, match="1- or 3-channel"):
        augment(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), None)


def test_random_erasing_on_normalized_batches():
    assert random_erasing(TrainConfig()) is None
    erase = random_erasing(TrainConfig(reprob=1.0, remode="pixel"))
    x = torch.zeros(4, 3, 16, 16)
    a = erase(x.clone(), batch_generator(0, 0, 0))
    b = erase(x.clone(), batch_generator(0, 0, 0))
    assert torch.equal(a, b)
    assert (a != 0).flatten(1).any(1).all()  # every image got a box of N(0, 1) noise
    assert (a == 0).flatten(1).any(1).all()  # ... and kept some of its pixels
    const = random_erasing(TrainConfig(reprob=1.0, remode="const"))(torch.ones(2, 1, 16, 16), None)
    assert (const == 0).any() and (const == 1).any()


# --- EMA ---------------------------------------------------------------------------------------------------


def test_ema_is_timms_model_ema_v3():
    from timm.utils import ModelEmaV3

    model = nn.Linear(3, 2)
    assert ema(TrainConfig(), model) is None
    average = ema(TrainConfig(model_ema=True, model_ema_decay=0.5), model)
    assert isinstance(average, ModelEmaV3) and average.decay == 0.5
    with torch.no_grad():
        model.weight.add_(1.0)
    start = average.module.weight.clone()
    average.update(model)
    torch.testing.assert_close(average.module.weight, 0.5 * start + 0.5 * model.weight)


# --- example scripts ---------------------------------------------------------------------------------------

SCRIPT_NAMES = ["sws_aux_s.sh", "sws_des_s.sh", "tleg_aux_s.sh", "tleg_des_s.sh", "wave.sh", "wave_des.sh"]


@pytest.mark.parametrize("name", [*SCRIPT_NAMES, "_deit.sh"])
def test_imagenet_script_parses(name):
    subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_imagenet_script_passes_env_and_extra_args_to_lgtool(name, tmp_path):
    """Run each script against a stub `lgtool` that records its arguments: EPOCHS and the data path reach
    the training command, extra arguments are appended last (so they win), learning uses the recipe flags."""
    log = tmp_path / "calls"
    stub = tmp_path / "bin" / "lgtool"
    stub.parent.mkdir()
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {log}\n')
    stub.chmod(0o755)
    gene = tmp_path / "gene.safetensors"
    gene.write_bytes(b"")
    env = {
        **os.environ,
        "PATH": f"{stub.parent}:{os.environ['PATH']}",
        "DATA": str(tmp_path / "tiny"),
        "OUT": str(tmp_path / "out"),
        "GENE": str(gene),
        "EPOCHS": "1",
        "NPROC": "1",
        "DEPTHS": "3 12",
    }
    subprocess.run(["bash", str(SCRIPTS / name), "--batch-size", "4"], check=True, env=env, cwd=tmp_path)
    calls = log.read_text().splitlines()
    training = [c for c in calls if c.split()[0] in ("learn", "finetune")]
    assert training and len(training) == (1 if "aux" in name or name == "wave.sh" else 2)
    for call in training:
        assert f"--data {tmp_path / 'tiny'}" in call and "--epochs 1 " in call
        assert call.endswith("--batch-size 4")
        for flag in ("--aa rand-m9-mstd0.5-inc1", "--reprob 0.25", "--mixup 0.8", "--cutmix 1.0", "--smoothing 0.1"):
            assert flag in call
        assert "--lr-base-size 512" in call
    for call in calls:  # and the real parser accepts every flag and value they use
        assert_accepted(call.split())
    if training[0].startswith("learn"):
        assert "--ancestor deit_base" in training[0]
    else:
        expands = [c for c in calls if c.startswith("expand")]
        assert [c.split("--depth ")[1].split()[0] for c in expands] == ["3", "12"]


def assert_accepted(argv: list[str]) -> None:
    """Parse `lgtool ARGV` with lgtool's own command line, without running it: unknown flags and values
    outside their types fail here, and the training flags must make a valid TrainConfig."""
    from dataclasses import fields

    from typer.main import get_command

    from lgtool.cli import app

    command = get_command(app).commands[argv[0]]
    ctx = command.make_context(argv[0], argv[1:])
    settings = {f.name for f in fields(TrainConfig)}
    if settings & set(ctx.params):
        TrainConfig(**{k: v for k, v in ctx.params.items() if k in settings})
