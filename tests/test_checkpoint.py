"""Training checkpoints: the format stays what it was, a checkpoint written before `fit` was split into setup, step
and epoch end resumes, and a damaged or crafted one is refused in one line that says what is wrong."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from test_training_recipe import Recorder, _tiny_data

from lgtool.base.errors import InputError
from lgtool.training import recipe
from lgtool.training.loop import TrainConfig, fit
from lgtool.training.loop.checkpoint import Position, load_checkpoint, save_checkpoint
from lgtool.training.loop.train import param_groups
from lgtool.training.teacher_cache import TeacherCache

# Written by the loop before the split (lgtool at d840f66): `fit(Recorder(0), _tiny_data(), view, CFG,
# identity=IDENTITY, teacher=Recorder(1), checkpoint=...)`, copied in the middle of the second epoch (epoch 1,
# batch 2, step 3). With an EMA, gradient accumulation and the teacher's cached logits, every part is there.
BEFORE = Path(__file__).parent / "data" / "checkpoint-before-split.ckpt"
CFG = TrainConfig(epochs=3, batch_size=8, accum_steps=2, lr=1e-2, warmup_epochs=0.5, augment="none", kd="soft",
                  alpha=0.5, model_ema=True, model_ema_decay=0.9, save_every=1, log_every=1)  # fmt: skip
IDENTITY = {"kind": "fixture"}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def _load(path: Path):
    """The checkpoint loaded into a fresh model, optimizer, EMA and teacher cache made as `fit` makes them."""
    model = Recorder(0)
    optimizer = torch.optim.AdamW(param_groups(model, model.named_parameters(), CFG.weight_decay))
    parts = dict(model=model, optimizer=optimizer, average=recipe.ema(CFG, model), cache=TeacherCache(Recorder(1)))
    return parts, load_checkpoint(path, identity=IDENTITY, cfg=CFG, **parts)


def _resume(path: Path, checkpoint: Path) -> dict:
    data = _tiny_data()
    fit(Recorder(0), data, data.view, CFG, identity=IDENTITY, teacher=Recorder(1), checkpoint=checkpoint, resume=path)
    return torch.load(checkpoint, weights_only=True)


def test_a_checkpoint_from_before_the_split_is_read_and_written_back_unchanged(tmp_path):
    old = torch.load(BEFORE, weights_only=True)
    parts, pos = _load(BEFORE)
    assert pos == Position(epoch=1, batch=2, step=3, history=old["position"]["history"], teacher_images=32)
    save_checkpoint(tmp_path / "again.ckpt", identity=IDENTITY, cfg=CFG, pos=pos, **parts)
    new = torch.load(tmp_path / "again.ckpt", weights_only=True)
    assert list(new) == list(old)
    # all but the config, which records today's TrainConfig: it may have grown settings since
    assert [k for k in old if k != "config" and not _equal(old[k], new[k])] == []


def test_a_checkpoint_from_before_the_split_resumes_as_the_same_state_saved_now(tmp_path):
    parts, pos = _load(BEFORE)
    save_checkpoint(tmp_path / "now.ckpt", identity=IDENTITY, cfg=CFG, pos=pos, **parts)
    before, now = _resume(BEFORE, tmp_path / "a.ckpt"), _resume(tmp_path / "now.ckpt", tmp_path / "b.ckpt")
    assert before["position"]["step"] == 6 and [h["epoch"] for h in before["position"]["history"]] == [1, 2, 3]
    assert before["position"]["teacher_images"] == 32  # every input was cached in the first epoch
    assert [k for k in before if not _equal(before[k], now[k])] == []


def test_position_is_saved_as_the_dict_it_always_was():
    assert asdict(Position()) == {"epoch": 0, "batch": 0, "step": 0, "history": [], "teacher_images": 0}
    saved = {"epoch": 2, "batch": 1, "step": 9, "history": [{"epoch": 1, "step": 4, "top1": 0.5}]}
    assert Position.from_saved(saved) == Position(2, 1, 9, saved["history"], teacher_images=None)


def _set(where: str, value):
    """An edit of the checkpoint: `where` is a key, or a key in the position ("position.step")."""

    def edit(state):
        *parent, key = where.split(".")
        (state[parent[0]] if parent else state)[key] = value
        return state

    return edit


def _drop_a_tensor(state):
    state["model"].popitem()
    return state


CRAFTED = {
    "not-torch": (lambda state: b"not a checkpoint", "not a readable lgtool checkpoint"),
    "a-list": (lambda state: [1, 2], "not an lgtool checkpoint"),
    "identity-a-list": (_set("identity", []), "identity is not a map"),
    "no-optimizer": (_set("optimizer", {}), "no optimizer state"),
    "model-of-strings": (_set("model", {"w": "x"}), "model state is not a map of tensors"),
    "ema-of-numbers": (_set("ema", {"w": 1}), "ema state is not a map of tensors"),
    "logits-without-keys": (_set("teacher_logits", {"logits": torch.zeros(1)}), "teacher logits are not keys"),
    "rng-of-floats": (_set("rng", torch.zeros(5056)), "no CPU random generator state"),
    "step-negative": (_set("position.step", -1), "position is not epoch, batch and step counts"),
    "batch-a-float": (_set("position.batch", 1.0), "position is not epoch, batch and step counts"),
    "teacher-images-negative": (_set("position.teacher_images", -3), "the teacher's image count is not a count"),
    "history-without-top1": (_set("position.history", [{"epoch": 1}]), "history is not a list of epoch results"),
    "another-run": (_set("identity", {"kind": "other"}), "checkpoint is for another run (kind differ"),
    "a-tensor-missing": (_drop_a_tensor, "checkpoint does not fit this run"),
}


@pytest.mark.parametrize("craft, says", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_damaged_or_crafted_checkpoint_is_one_line_saying_what_is_wrong(tmp_path, craft, says):
    path = tmp_path / "crafted.ckpt"
    crafted = craft(torch.load(BEFORE, weights_only=True))
    if isinstance(crafted, bytes):
        path.write_bytes(crafted)
    else:
        torch.save(crafted, path)
    with pytest.raises(InputError) as refused:
        _load(path)
    assert str(refused.value).startswith(f"--resume {path}: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_missing_checkpoint_is_named():
    with pytest.raises(InputError, match="^--resume nowhere.ckpt: no such checkpoint$"):
        _load(Path("nowhere.ckpt"))
