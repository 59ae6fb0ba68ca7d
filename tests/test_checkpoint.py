"""Training checkpoints: the format stays what it was, a checkpoint written before `fit` was split into setup, step
and epoch end resumes, and a damaged or crafted one is refused in one line that says what is wrong."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion_mnist
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
    history = old["position"]["history"]
    assert pos == Position(epoch=1, batch=2, step=3, history=history, teacher_images=32, images=None)
    save_checkpoint(tmp_path / "again.ckpt", identity=IDENTITY, cfg=CFG, pos=pos, **parts)
    new = torch.load(tmp_path / "again.ckpt", weights_only=True)
    assert list(new) == list(old)
    # all but the config, which records today's TrainConfig: it may have grown settings since
    assert [k for k in old if k not in ("config", "position") and not _equal(old[k], new[k])] == []
    # the position gained the images count, unknown for a run that did not count them
    assert new["position"] == {**old["position"], "images": None}


def test_a_checkpoint_from_before_the_split_resumes_as_the_same_state_saved_now(tmp_path):
    parts, pos = _load(BEFORE)
    save_checkpoint(tmp_path / "now.ckpt", identity=IDENTITY, cfg=CFG, pos=pos, **parts)
    before, now = _resume(BEFORE, tmp_path / "a.ckpt"), _resume(tmp_path / "now.ckpt", tmp_path / "b.ckpt")
    assert before["position"]["step"] == 6 and [h["epoch"] for h in before["position"]["history"]] == [1, 2, 3]
    assert before["position"]["teacher_images"] == 32  # every input was cached in the first epoch
    assert [k for k in before if not _equal(before[k], now[k])] == []


def test_position_is_saved_as_the_dict_it_always_was():
    fresh = {"epoch": 0, "batch": 0, "step": 0, "history": [], "teacher_images": 0, "images": 0}
    assert asdict(Position()) == fresh
    saved = {"epoch": 2, "batch": 1, "step": 9, "history": [{"epoch": 1, "step": 4, "top1": 0.5}]}
    assert Position.from_saved(saved) == Position(2, 1, 9, saved["history"], teacher_images=None, images=None)


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
    "position-a-list": (_set("position", [1, 3]), "position is not a map"),
    "step-negative": (_set("position.step", -1), "position.step is -1, not a count"),
    "step-missing": (lambda state: state["position"].pop("step") and state, "position.step is missing"),
    "batch-a-float": (_set("position.batch", 1.0), "position.batch is 1.0, not a count"),
    "epoch-a-bool": (_set("position.epoch", True), "position.epoch is True, not a count"),
    "epoch-a-string": (_set("position.epoch", "1"), "position.epoch is '1', not a count"),
    "epoch-a-tensor": (_set("position.epoch", torch.tensor(1)), "position.epoch is tensor(1), not a count"),
    "teacher-images-negative": (_set("position.teacher_images", -3), "position.teacher_images is -3, not a count"),
    "history-a-dict": (_set("position.history", {}), "position.history is not a list of epoch results"),
    "history-of-numbers": (_set("position.history", [1]), "position.history[0] is not an epoch result"),
    "history-without-top1": (_set("position.history", [{"epoch": 1}]), "position.history[0].top1 is None"),
    "history-top1-nan": (_set("position.history", [{"epoch": 1, "top1": float("nan")}]), "top1 is nan, not an"),
    "history-top1-above-1": (_set("position.history", [{"epoch": 1, "top1": 7}]), "top1 is 7, not an accuracy"),
    "history-epoch-a-string": (_set("position.history", [{"epoch": "1", "top1": 0.5}]), "history[0].epoch is '1'"),
    "history-step-negative": (_set("position.history", [{"epoch": 1, "step": -2, "top1": 0.5}]), "[0].step is -2"),
    "history-ahead": (_set("position.history", [{"epoch": 2, "step": 2, "top1": 0.5}]), "lies after the position"),
    "epoch-past-the-last": (_set("position.epoch", 4), "position.epoch 4 (batch 2) is past this run's 3 epochs"),
    "batch-after-the-last-epoch": (_set("position.epoch", 3), "position.epoch 3 (batch 2) is past this run's 3"),
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


# Positions well formed but beyond what the fixture's run reaches: 32 images in micro-batches of 8, two to a step,
# so 4 micro-batches and 2 steps an epoch, 6 steps in all. Only `fit` knows its schedule: resumed through it.
UNREACHABLE = {
    "batch-past-the-epoch": ({"batch": 4}, "position.batch 4 is not a step's end within this run's 4 micro-batches"),
    "batch-mid-step": ({"batch": 1}, "position.batch 1 is not a step's end"),
    "step-past-the-last": ({"step": 7}, "position.step 7 is past this run's 6 optimizer steps"),
    "epoch-past-the-last": ({"epoch": 9, "batch": 0}, "position.epoch 9 (batch 0) is past this run's 3 epochs"),
    "huge-step": ({"step": 2**80}, f"position.step {2**80} is past this run's 6 optimizer steps"),
}


@pytest.mark.parametrize("edit, says", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_a_position_this_run_cannot_reach_is_refused_before_training(tmp_path, edit, says):
    state = torch.load(BEFORE, weights_only=True)
    state["position"].update(edit)
    torch.save(state, tmp_path / "crafted.ckpt")
    model = Recorder(0)
    with pytest.raises(InputError) as refused:
        data = _tiny_data()
        fit(model, data, data.view, CFG, identity=IDENTITY, teacher=Recorder(1), resume=tmp_path / "crafted.ckpt")
    message = str(refused.value)
    assert message.startswith(f"--resume {tmp_path / 'crafted.ckpt'}: checkpoint does not fit this run (")
    assert says in message
    assert "\n" not in message and model.seen == []  # nothing trained


@needs_fashion_mnist
def test_a_resumed_run_refuses_a_crafted_position_in_one_line_exit_3(run_cli, tmp_path):
    from conftest import tiny_gene

    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)
    state = torch.load(BEFORE, weights_only=True)
    state["position"]["epoch"] = "1"
    torch.save(state, tmp_path / "crafted.ckpt")
    assert run_cli("expand", gene, "-o", tmp_path / "desc")[0] == 0
    crafted = ("--resume", tmp_path / "crafted.ckpt", "--train-samples", 64, "--batch-size", 16, "--epochs", 1)
    code, out, err = run_cli("finetune", tmp_path / "desc", *crafted, "-o", tmp_path / "ft")
    assert (code, out) == (3, "") and err.count("\n") == 1 and "position.epoch is '1', not a count" in err, err
