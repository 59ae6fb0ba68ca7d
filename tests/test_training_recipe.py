"""The training recipe end to end: every timm flag at once on an RGB ImageFolder, the teacher under mixup,
LR scaling in the loop, and Desc-Nets at another resolution."""

import hashlib

import pytest
import torch
from conftest import tiny_gene
from PIL import Image
from test_recipe import assert_accepted
from torch import nn

from lgtool.base.compat import import_timm
from lgtool.base.normalization import Normalization
from lgtool.training.data import Data, TensorSplit, View
from lgtool.training.loop import evaluate, fit
from lgtool.training.settings import TrainConfig

RECIPE = [
    "--aa", "rand-m9-mstd0.5-inc1", "--color-jitter", "0.4", "--reprob", "0.25", "--mixup", "0.8",
    "--cutmix", "1.0", "--mixup-switch-prob", "0.5", "--smoothing", "0.1", "--drop-path", "0.1",
    "--model-ema", "--model-ema-decay", "0.9", "--lr-base-size", "512", "--workers", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    """train/ and val/, 2 classes, 8 + 4 RGB images of 32 px: 2 steps of 4 per epoch."""
    root = tmp_path_factory.mktemp("rgb")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 4), ("val", 2)):
        for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(0, 40, (32, 32, 3), generator=g, dtype=torch.uint8)
                pixels = (torch.tensor(colour, dtype=torch.uint8) + noise).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_every_recipe_flag_at_once_in_finetune_learn_and_expand(rgb_folder, tmp_path, run_cli):
    timm = import_timm()
    common = ["--data", rgb_folder, "--epochs", 1, "--batch-size", 4, *RECIPE]
    code, _, err = run_cli(
        "finetune", "--init", "scratch", "--width", 32, "--num-heads", 2, "--depth", 2, "--img-size", 32,
        "--patch-size", 8, *common, "-o", tmp_path / "anc",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        "learn", "--ancestor", tmp_path / "anc" / "best", "--method", "tleg", "--aux-depth", 2, *common,
        "-o", tmp_path / "g.safetensors",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("expand", tmp_path / "g.safetensors", "--depth", 3, "-o", tmp_path / "desc")
    assert code == 0, err
    for folder in (tmp_path / "anc" / "best", tmp_path / "desc"):
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    import lgtool

    provenance = lgtool.load_learngene(tmp_path / "g.safetensors").meta.provenance
    learn_lr = TrainConfig.for_command("learn").lr  # learn's own default, scaled by --lr-base-size 512
    assert provenance["recipe"]["mixup"] == 0.8 and provenance["lr"] == pytest.approx(learn_lr * 4 / 512)


def test_the_parser_refuses_what_the_scripts_must_not_use():
    with pytest.raises(Exception, match="--bogus"):
        assert_accepted(["learn", "--ancestor", "x", "--bogus"])


class Recorder(nn.Module):
    """A tiny classifier that remembers every batch it is shown."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def _tiny_data(n=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    split = TensorSplit(images, torch.arange(n) % 4, ["a", "b", "c", "d"])
    return Data("tiny", split, split.subset(torch.arange(8)), View(8, 1, Normalization.plain(1)))


def test_under_mixup_the_teacher_sees_the_mixed_images_the_student_sees():
    data, student, teacher = _tiny_data(), Recorder(0), Recorder(1)
    cfg = TrainConfig(epochs=1, batch_size=8, mixup=1.0, augment="none", eval_each_epoch=False, warmup_epochs=0)
    fit(student, data, data.view, cfg, identity={}, teacher=teacher)
    raw = [x for x, _ in data.train.batches(data.view, 8, train=True, recipe=cfg)]
    trained = student.seen[: len(raw)]  # then the final evaluation's batches
    assert len(teacher.seen) == len(raw)
    assert all(torch.equal(t, s) for t, s in zip(teacher.seen, trained, strict=True))
    assert not any(torch.equal(r, s) for r, s in zip(raw, trained, strict=True))  # mixed, not the raw batches


def test_fit_evaluates_on_the_split_it_is_given():
    data, student = _tiny_data(), Recorder(0)
    held_out = data.train.subset(torch.arange(8, 24))  # not data.test, the first 8 images
    cfg = TrainConfig(epochs=1, batch_size=8, augment="none", warmup_epochs=0)
    summary = fit(student, data, data.view, cfg, identity={}, evaluate_on=held_out)
    steps = len(data.train) // 8
    judged = [x for x, _ in held_out.batches(data.view, 256, train=False)]
    assert len(student.seen) == steps + len(judged)  # the training batches, then one pass over held_out
    assert all(torch.equal(a, b) for a, b in zip(student.seen[steps:], judged, strict=True))
    assert summary["top1"] == summary["history"][-1]["top1"] == evaluate(student, held_out, data.view)


@pytest.mark.parametrize(
    "batch, accum, base, expected", [(8, 1, 0, 1e-3), (8, 2, 64, 1e-3 * 16 / 64), (8, 1, 32, 1e-3 * 8 / 32)]
)
def test_the_loop_trains_at_the_scaled_rate(batch, accum, base, expected):
    data, model = _tiny_data(), Recorder(0)
    cfg = TrainConfig(epochs=1, batch_size=batch, accum_steps=accum, lr=1e-3, lr_base_size=base, warmup_epochs=0)
    assert fit(model, data, data.view, cfg, identity={})["lr"] == pytest.approx(expected)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_expand_at_another_resolution_resamples_the_position_grid(tmp_path, run_cli):
    timm = import_timm()
    path = tiny_gene("tleg").save(tmp_path / "g.safetensors")  # 28 px, patch 7: a 4 x 4 grid
    code, _, err = run_cli("expand", path, "--img-size", 56, "-o", tmp_path / "big")
    assert code == 0, err
    model = timm.create_model(f"local-dir:{tmp_path / 'big'}", pretrained=True)  # strict load
    assert model.pos_embed.shape == (1, model.num_prefix_tokens + 8 * 8, 32) and model.patch_embed.img_size == (56, 56)
    assert model.eval()(torch.randn(2, 1, 56, 56)).shape == (2, 10)
    plain, same = tmp_path / "plain", tmp_path / "same"
    assert run_cli("expand", path, "-o", plain)[0] == 0
    assert run_cli("expand", path, "--img-size", 28, "-o", same)[0] == 0
    assert _sha(plain / "model.safetensors") == _sha(same / "model.safetensors")
