"""A training checkpoint: where training stands (`Position`) and everything an exact resume needs.

One `torch.save` of a plain dict, written atomically: identity (what is trained), config, position, model,
optimizer, the CPU random generator, and when present the EMA weights and the cached teacher logits. It is
read back with `weights_only=True` and its structure checked before use, so that a damaged or crafted file is
one line of error, never an unpickled object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from lgtool.base.arch import one_line
from lgtool.base.atomic import atomic_file
from lgtool.base.errors import InputError
from lgtool.training.settings import TrainConfig


@dataclass
class Position:
    """Where training stands: saved in every checkpoint as a dict of these fields, and where a resume starts."""

    epoch: int = 0
    batch: int = 0  # micro-batches done in this epoch
    step: int = 0  # optimizer steps done
    history: list = field(default_factory=list)  # {"epoch", "step", "top1"} at each evaluated epoch end
    teacher_images: int | None = 0  # the teacher's forwards; None once resumed from a run that did not count them
    images: int | None = 0  # images trained on, every rank and every run resumed; None as teacher_images

    @classmethod
    def from_saved(cls, saved: dict) -> Position:
        """A checkpoint's "position"; one written before the teacher's forwards (or the images) were counted lacks
        the count."""
        unknown = {"teacher_images": None, "images": None}
        return cls(**{**unknown, **{f.name: saved[f.name] for f in fields(cls) if f.name in saved}})


def save_checkpoint(
    path: Path, model, optimizer, identity: dict, cfg: TrainConfig, pos: Position, average=None, cache=None
) -> None:
    state = {
        "identity": identity,
        "config": asdict(cfg),
        "position": asdict(pos),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    if average is not None:
        state["ema"] = {k: v.detach().cpu() for k, v in average.module.state_dict().items()}
    if cache is not None:
        state["teacher_logits"] = cache.state()
    # through a Python file: a refused write (a full disk) then reaches atomic_file as the OSError under torch's own
    # RuntimeError; torch.save to a path reports it with no errno at all
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def load_checkpoint(
    path: Path, model, optimizer, identity: dict, cfg: TrainConfig, average=None, cache=None, schedule=None
) -> Position:
    """Restore a checkpoint of this run (its `identity` must match) into the model, optimizer, EMA, the CPU
    generator and the teacher cache; returns where it stopped. A position this run cannot reach (past `cfg`'s
    last epoch; with the loop's `schedule`, past its micro-batches per epoch or its steps) is refused."""
    path = Path(path)
    state = _read(path)
    problem = _reach_problem(state["position"], cfg, schedule)
    if problem:
        raise InputError(f"--resume {path}: checkpoint does not fit this run ({problem})")
    if state["identity"] != identity:
        diff = sorted(k for k in set(identity) | set(state["identity"]) if identity.get(k) != state["identity"].get(k))
        raise InputError(
            f"--resume {path}: checkpoint is for another run ({', '.join(diff)} differ: "
            f"{ {k: state['identity'].get(k) for k in diff} })"
        )
    try:  # shapes, names and optimizer groups: torch knows them best, and says which one is wrong
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if average is not None:
            average.module.load_state_dict(state.get("ema", state["model"]))
        torch.set_rng_state(state["rng"])
        if cache is not None and "teacher_logits" in state:
            cache.load(state["teacher_logits"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as e:
        raise InputError(f"--resume {path}: checkpoint does not fit this run ({one_line(str(e))})") from None
    return Position.from_saved(state["position"])


def _read(path: Path) -> dict:
    """The checkpoint's dict, its structure checked."""
    if not path.is_file():
        raise InputError(f"--resume {path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:  # noqa: BLE001 - any unreadable file is an input error here
        raise InputError(f"--resume {path}: not a readable lgtool checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "identity" not in state:
        raise InputError(f"--resume {path}: not an lgtool checkpoint")
    problem = _tensors_problem(state) or _position_problem(state.get("position"))
    if problem:
        raise InputError(f"--resume {path}: not a usable lgtool checkpoint ({problem})")
    return state


def _tensors_problem(state: dict) -> str | None:
    """What is wrong with the identity and tensor parts `load_checkpoint` reads, if anything."""
    if not isinstance(state["identity"], dict):
        return "identity is not a map"
    for key in ("model", "optimizer"):
        if not isinstance(state.get(key), dict) or not state[key]:
            return f"no {key} state"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        return "model state is not a map of tensors"
    if "ema" in state and not (
        isinstance(state["ema"], dict) and all(isinstance(v, torch.Tensor) for v in state["ema"].values())
    ):
        return "ema state is not a map of tensors"
    cached = state.get("teacher_logits")
    if cached is not None and not (
        isinstance(cached, dict)
        and all(isinstance(cached.get(k), torch.Tensor) for k in ("keys", "logits", "forwards"))
    ):
        return "teacher logits are not keys, logits and a count"
    rng = state.get("rng")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        return "no CPU random generator state of the right size"
    return None


def _position_problem(pos) -> str | None:
    """What is wrong with a saved position, if anything, naming the field."""
    if not isinstance(pos, dict):
        return "position is not a map"
    for key in ("epoch", "batch", "step"):
        if key not in pos:
            return f"position.{key} is missing"
        if not _count(pos[key]):
            return f"position.{key} is {_shown(pos[key])}, not a count"
    for key in ("teacher_images", "images"):
        if pos.get(key) is not None and not _count(pos[key]):
            return f"position.{key} is {_shown(pos[key])}, not a count"
    history = pos.get("history")
    if not isinstance(history, list):
        return "position.history is not a list of epoch results"
    for i, h in enumerate(history):
        where = f"position.history[{i}]"
        if not isinstance(h, dict):
            return f"{where} is not an epoch result"
        for key in ("epoch", "step"):
            # "step" came later: an old checkpoint's history may lack it
            if (key in h or key == "epoch") and not _count(h.get(key)):
                return f"{where}.{key} is {_shown(h.get(key))}, not a count"
        top1 = h.get("top1")
        # NaN fails the range test too: a saved epoch result is rank 0's, always a real accuracy
        if type(top1) not in (int, float) or not 0 <= top1 <= 1:
            return f"{where}.top1 is {_shown(top1)}, not an accuracy in [0, 1]"
        if h["epoch"] == 0 or h["epoch"] > pos["epoch"] or h.get("step", 0) > pos["step"]:
            return f"{where} (epoch {h['epoch']}, step {h.get('step')}) lies after the position itself"
    return None


def _reach_problem(pos: dict, cfg: TrainConfig, schedule) -> str | None:
    """Where a well-formed position lies beyond what this run (its epochs; with its schedule, its micro-batches
    per epoch and optimizer steps) can reach, if it does: the loop would skip or misread it."""
    if pos["epoch"] > cfg.epochs or (pos["epoch"] == cfg.epochs and pos["batch"] > 0):
        return f"position.epoch {pos['epoch']} (batch {pos['batch']}) is past this run's {cfg.epochs} epochs"
    if schedule is None:
        return None
    if pos["batch"] >= schedule.micro_per_epoch or pos["batch"] % cfg.accum_steps:
        return (
            f"position.batch {pos['batch']} is not a step's end within this run's {schedule.micro_per_epoch} "
            "micro-batches per epoch"
        )
    if pos["step"] > schedule.total:
        return f"position.step {pos['step']} is past this run's {schedule.total} optimizer steps"
    return None


def _count(x) -> bool:
    return type(x) is int and x >= 0  # not a bool, a float or a tensor


def _shown(x) -> str:
    """A crafted value, short and on one line."""
    text = one_line(repr(x))
    return text if len(text) <= 40 else text[:37] + "..."
