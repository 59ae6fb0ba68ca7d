"""A training checkpoint: what `fit` saves every epoch (and every `save_every` steps) and resumes from exactly.

One `torch.save` of a plain dict, written atomically: identity (what is trained), config, position (epoch,
batch, step, history, teacher_images), model, optimizer, the CPU random generator, and when present the EMA
weights and the teacher's cached logits. It is read back with `weights_only=True` and its structure is
checked before use, so that a damaged or crafted file is one line of error.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from lgtool.format.arch import one_line
from lgtool.format.atomic import atomic_file
from lgtool.format.errors import InputError
from lgtool.training.settings import TrainConfig


def save_checkpoint(
    path: Path, model, optimizer, identity: dict, cfg: TrainConfig, pos: dict, average=None, cache=None
) -> None:
    state = {
        "identity": identity,
        "config": asdict(cfg),
        "position": pos,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    if average is not None:
        state["ema"] = {k: v.detach().cpu() for k, v in average.module.state_dict().items()}
    if cache is not None:
        state["teacher_logits"] = cache.state()
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model, optimizer, identity: dict, cfg: TrainConfig, average=None, cache=None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--resume {path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:  # noqa: BLE001 - any unreadable file is an input error here
        raise InputError(f"--resume {path}: not a readable lgtool checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "identity" not in state:
        raise InputError(f"--resume {path}: not an lgtool checkpoint")
    _check_checkpoint(path, state)
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
    return state["position"]


def _check_checkpoint(path: Path, state: dict) -> None:
    """The structure `fit` reads from a checkpoint, so that a crafted or damaged one is one line."""

    def bad(what: str):
        raise InputError(f"--resume {path}: not a usable lgtool checkpoint ({what})")

    if not isinstance(state["identity"], dict):
        bad("identity is not a map")
    for key in ("model", "optimizer"):
        if not isinstance(state.get(key), dict) or not state[key]:
            bad(f"no {key} state")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        bad("model state is not a map of tensors")
    if "ema" in state and not (
        isinstance(state["ema"], dict) and all(isinstance(v, torch.Tensor) for v in state["ema"].values())
    ):
        bad("ema state is not a map of tensors")
    cached = state.get("teacher_logits")
    if cached is not None and not (
        isinstance(cached, dict)
        and all(isinstance(cached.get(k), torch.Tensor) for k in ("keys", "logits", "forwards"))
    ):
        bad("teacher logits are not keys, logits and a count")
    rng = state.get("rng")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        bad("no CPU random generator state of the right size")
    pos = state.get("position")

    def count(x):
        return type(x) is int and x >= 0

    if not isinstance(pos, dict) or not all(count(pos.get(k)) for k in ("epoch", "batch", "step")):
        bad("position is not epoch, batch and step counts")
    if pos.get("teacher_images") is not None and not count(pos["teacher_images"]):
        bad("the teacher's image count is not a count")
    history = pos.get("history")
    if not isinstance(history, list) or not all(
        isinstance(h, dict) and isinstance(h.get("top1"), (int, float)) and count(h.get("epoch")) for h in history
    ):
        bad("history is not a list of epoch results")
