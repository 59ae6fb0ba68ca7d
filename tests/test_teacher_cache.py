"""Teacher logits computed once per distinct input: equal to the teacher's own, counted, kept across resume."""

import shutil

import pytest
import torch
from torch import nn

from lgtool.base.normalization import Normalization
from lgtool.training.data import Data, TensorSplit, View
from lgtool.training.loop import fit
from lgtool.training.settings import TrainConfig
from lgtool.training.teacher_cache import TeacherCache, input_keys, inputs_repeat

GRAY = View(28, 1, Normalization.plain(1))


class Counting(nn.Module):
    """A small teacher that counts the images it ran on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.GELU(), nn.Linear(32, 10))
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return self.net(x)


def toy_data(n=64) -> Data:
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10)
    split.classes = [str(i) for i in range(10)]
    return Data("toy", split, split, GRAY)


def student():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def cfg(**kw):
    return TrainConfig(**{"epochs": 4, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0, "log_every": 10**9, **kw})


def test_cached_logits_equal_the_teachers_and_repeats_cost_nothing():
    teacher, x = Counting().eval(), torch.randn(12, 1, 28, 28)
    cache = TeacherCache(teacher)
    first = cache(x)
    torch.testing.assert_close(first, teacher.net(x))
    again = cache(torch.cat([x[6:], x.flip(-1)[:6]]))  # six seen inputs, six new (mirrored)
    assert teacher.images == 18 and cache.forwards == 18
    torch.testing.assert_close(again[:6], first[6:], rtol=0, atol=0)  # served from the cache, bit for bit
    torch.testing.assert_close(again[6:], teacher.net(x.flip(-1)[:6]))


def test_an_input_repeated_within_a_batch_runs_once():
    teacher, x = Counting().eval(), torch.randn(4, 1, 28, 28)
    out = TeacherCache(teacher)(torch.cat([x, x]))
    assert teacher.images == 4
    torch.testing.assert_close(out[:4], out[4:], rtol=0, atol=0)


def test_keys_tell_inputs_apart_and_agree_on_equal_ones():
    x = torch.randn(8, 1, 28, 28)
    keys = input_keys(torch.cat([x, x.clone(), x.flip(-1)]))
    assert torch.equal(keys[:8], keys[8:16])
    assert len({tuple(k) for k in keys[:8].tolist()} | {tuple(k) for k in keys[16:].tolist()}) == 16


@pytest.mark.parametrize(
    "augment, bound",
    [("none", 64), ("flip", 128)],  # distinct inputs: each image, or each image and its mirror
)
def test_fit_runs_the_teacher_once_per_distinct_input(augment, bound):
    teacher = Counting()
    summary = fit(student(), toy_data(), GRAY, cfg(augment=augment), identity={}, teacher=teacher)
    assert summary["teacher_live"] is None
    assert summary["teacher_images"] == teacher.images <= bound < summary["images_seen"]  # 4 epochs: 256 images
    if augment == "none":
        assert teacher.images == 64


def test_inputs_that_never_repeat_run_the_teacher_live():
    teacher = Counting()
    summary = fit(student(), toy_data(), GRAY, cfg(augment="crop-flip"), identity={}, teacher=teacher)
    assert "random crops" in summary["teacher_live"]
    assert summary["teacher_images"] == teacher.images == summary["images_seen"]
    for settings, why in [
        ({"mixup": 0.8}, "Mixup"),
        ({"reprob": 0.25}, "erasing"),
        ({"aa": "rand-m9-mstd0.5"}, "Rand"),
    ]:
        assert why in inputs_repeat(TrainConfig(augment="none", **settings), toy_data().train)


def run_keeping_epoch_one(tmp_path):
    """A full distillation run, and a copy of its checkpoint as it stood after epoch 1."""
    data, ckpt, after_one = toy_data(), tmp_path / "run.ckpt", tmp_path / "one.ckpt"

    def keep_first_epoch(epoch, *_):
        if epoch == 2:  # the checkpoint still holds epoch 1: it is saved after this callback
            shutil.copy(ckpt, after_one)

    straight = student()
    full = fit(straight, data, GRAY, cfg(augment="none"), identity={}, teacher=Counting(), checkpoint=ckpt,
               on_epoch=keep_first_epoch)  # fmt: skip
    return data, straight, full, after_one


def test_resume_keeps_the_cached_logits(tmp_path):
    data, straight, full, after_one = run_keeping_epoch_one(tmp_path)
    view = GRAY
    saved = torch.load(after_one, weights_only=True)["teacher_logits"]
    assert saved["keys"].shape == (64, 2) and saved["logits"].shape == (64, 10)
    teacher, resumed = Counting(), student()
    again = fit(resumed, data, view, cfg(augment="none"), identity={}, teacher=teacher, checkpoint=tmp_path / "b.ckpt",
                resume=after_one)  # fmt: skip
    assert teacher.images == 0  # every input of epochs 2-4 was already in the checkpoint
    assert again["teacher_images"] == full["teacher_images"] == 64
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_a_checkpoint_that_never_counted_the_teachers_forwards_resumes_without_a_count(tmp_path):
    """Checkpoints written before the teacher's forwards were counted hold no `teacher_images`: such a run
    resumes exactly, and reports no count rather than a wrong one."""
    data, straight, full, after_one = run_keeping_epoch_one(tmp_path)
    view = GRAY
    state = torch.load(after_one, weights_only=True)
    del state["position"]["teacher_images"]
    torch.save(state, after_one)
    resumed = student()
    again = fit(resumed, data, view, cfg(augment="none"), identity={}, teacher=Counting(), resume=after_one,
                checkpoint=tmp_path / "b.ckpt")  # fmt: skip
    assert again["teacher_images"] is None and again["steps"] == full["steps"]
    assert torch.load(tmp_path / "b.ckpt", weights_only=True)["position"]["teacher_images"] is None
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
