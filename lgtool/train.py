"""One training loop for `learn` (distil an Aux-Net from an ancestor), WAVE calibration and `finetune`.

AdamW (no decay on 1-D tensors, position embeddings and WAVE scalers), linear warmup + cosine per step,
gradient accumulation, optional bf16 autocast and torch.compile, evaluation each epoch, atomic
checkpoints every epoch and every `save_every` steps, exact resume, DDP when WORLD_SIZE > 1.
The loss is passed in as a function of (student logits, teacher logits, labels).
"""

from __future__ import annotations

import math
import os
import random
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lgtool.errors import InputError, LgtoolError, UsageError


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    accum_steps: int = 1
    label_smoothing: float = 0.1
    kd: str = "soft"  # soft | hard | none
    alpha: float = 1.0  # weight of the distillation term; 1 - alpha goes to the label loss
    tau: float = 1.0
    kd_reduction: str = "per_logit"  # per_logit (official: sum / (B*C)) | batchmean
    drop_path: float = 0.0
    augment: str = "flip"  # none | flip | crop-flip (in-memory sets); ImageFolder: timm's train transform unless none
    seed: int = 0
    bf16: bool = False
    compile: bool = False
    save_every: int = 0  # steps; 0 = only at epoch ends
    log_every: int = 20
    max_steps: int | None = None  # stop early (WAVE calibration counts steps, not epochs)
    eval_each_epoch: bool = True  # else only after the last one

    def __post_init__(self):
        choices = {
            "kd": ("soft", "hard", "none"),
            "kd_reduction": ("per_logit", "batchmean"),
            "augment": ("none", "flip", "crop-flip"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"unknown {flag} {getattr(self, name)!r}: choose {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.accum_steps < 1:
            raise UsageError("--epochs, --batch-size and --accum-steps must be at least 1")


class Interrupted(LgtoolError):
    exit_code = 130


class Diverged(LgtoolError):
    exit_code = 1


def distillation_loss(cfg: TrainConfig):
    """(student, teacher, labels) -> loss: (1 - alpha) * label CE + alpha * KD, as in DeiT/TLEG/SWS."""

    def loss(student, teacher, labels):
        base = F.cross_entropy(student, labels, label_smoothing=cfg.label_smoothing)
        if teacher is None or cfg.kd == "none" or cfg.alpha == 0:
            return base
        if cfg.kd == "hard":
            kd = F.cross_entropy(student, teacher.argmax(-1))
        else:
            t = cfg.tau
            kl = F.kl_div(
                F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), reduction="sum", log_target=True
            )
            kd = kl * t * t / (student.numel() if cfg.kd_reduction == "per_logit" else student.shape[0])
        return (1 - cfg.alpha) * base + cfg.alpha * kd

    return loss


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(named_params, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in named_params:
        skip = p.ndim <= 1 or name.endswith("pos_embed") or name.endswith("cls_token") or ".scaler." in f".{name}"
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else None
        if world <= 1:
            return cls(0, 1, device or torch.device("cpu"))
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device is not None else "gloo")
        if device is not None:
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), world, device or torch.device("cpu"))

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()


@torch.no_grad()
def evaluate(model: nn.Module, split, view, batch_size: int = 256, device="cpu") -> float:
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in split.batches(view, batch_size, train=False, device=device):
        correct += (model(x).argmax(-1) == y).sum()
        total += len(y)
    model.train(was_training)
    return (correct / max(1, total)).item()


def fit(
    model: nn.Module,
    data,
    view,
    cfg: TrainConfig,
    *,
    identity: dict,
    checkpoint: Path | None = None,
    resume: Path | None = None,
    teacher: nn.Module | None = None,
    trainable=None,
    log=None,
    on_epoch=None,
) -> dict:
    """Train `model` (its parameters, or those whose names pass `trainable`) and return a summary.

    `on_epoch(epoch, top1, history)` runs on rank 0 after each evaluation (e.g. to keep the best model).

    `identity` (what is trained: method, architecture, ...) is saved in checkpoints and must match on resume."""
    dist = Dist.from_env()
    log = log if (log and dist.main) else (lambda *a, **k: None)
    model.to(dist.device).train()
    named = [(n, p) for n, p in model.named_parameters() if trainable is None or trainable(n)]
    for n, p in model.named_parameters():
        p.requires_grad_(trainable is None or trainable(n))
    optimizer = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    if teacher is not None:
        teacher.to(dist.device).eval().requires_grad_(False)
    step_model = model
    if dist.world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device] if dist.device.type == "cuda" else None
        )
    if cfg.compile:
        step_model = torch.compile(step_model)
    loss_fn = distillation_loss(cfg)
    batches_per_epoch = len(data.train) // (cfg.batch_size * dist.world)
    if batches_per_epoch == 0:
        raise InputError(
            f"--batch-size {cfg.batch_size} (x {dist.world} ranks) is larger than the {len(data.train)} training images"
        )
    steps_per_epoch = max(1, batches_per_epoch // cfg.accum_steps)
    total = min(cfg.epochs * steps_per_epoch, cfg.max_steps or cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    pos = {"epoch": 0, "batch": 0, "step": 0, "history": []}
    if resume is not None:
        pos = load_checkpoint(resume, model, optimizer, identity, cfg)
    else:
        random.seed(cfg.seed + dist.rank)
        torch.manual_seed(cfg.seed + dist.rank)  # drop path; data order has its own seeded generators

    interrupted = {"flag": False}
    # torchrun forwards Ctrl-C to every rank: each sets its flag, saves (rank 0 writes) and stops.
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.update(flag=True))
    bad_step = torch.full((), -1, device=dist.device)
    running, seen, t0, wall = torch.zeros((), device=dist.device), 0, time.perf_counter(), 0.0

    def save():
        if checkpoint is None:
            return
        if bad_step.item() >= 0:  # never overwrite the last good checkpoint with a diverged state
            raise Diverged(f"loss became NaN/inf at step {bad_step.item()}; last good checkpoint: {checkpoint}")
        if dist.main:
            save_checkpoint(checkpoint, model, optimizer, identity, cfg, pos)
        dist.barrier()

    try:
        for epoch in range(pos["epoch"], cfg.epochs):
            pos["epoch"] = epoch
            start = pos["batch"]
            batches = data.train.batches(
                view,
                cfg.batch_size,
                train=True,
                seed=cfg.seed,
                epoch=epoch,
                start=start,
                rank=dist.rank,
                world=dist.world,
                device=dist.device,
                augment=cfg.augment,
            )
            for i, (x, y) in enumerate(batches, start=start):
                if i >= steps_per_epoch * cfg.accum_steps or pos["step"] >= total:
                    break
                with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    t_logits = teacher(x) if teacher is not None and cfg.kd != "none" and cfg.alpha > 0 else None
                    loss = loss_fn(step_model(x).float(), None if t_logits is None else t_logits.float(), y)
                (loss / cfg.accum_steps).backward()
                running += loss.detach()
                bad_step = torch.where((~loss.detach().isfinite()) & (bad_step < 0), pos["step"], bad_step)
                seen += len(y) * dist.world
                pos["batch"] = i + 1
                if (i + 1) % cfg.accum_steps:
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(pos["step"], total, warmup, cfg)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pos["step"] += 1
                if pos["step"] % cfg.log_every == 0:  # the only host sync in the loop
                    if bad_step.item() >= 0:
                        raise Diverged(
                            f"loss became NaN/inf at step {bad_step.item()}; "
                            f"last good checkpoint: {checkpoint or 'none'}"
                        )
                    elapsed = wall + time.perf_counter() - t0
                    log(
                        step=pos["step"],
                        total=total,
                        epoch=epoch,
                        loss=(running / cfg.log_every / cfg.accum_steps).item(),
                        images_per_s=seen / max(elapsed, 1e-9),
                    )
                    running.zero_()
                if cfg.save_every and pos["step"] % cfg.save_every == 0:
                    save()
                if interrupted["flag"]:
                    save()
                    raise Interrupted(
                        f"interrupted at step {pos['step']}; checkpoint saved to {checkpoint}"
                        + (f", continue with --resume {checkpoint}" if checkpoint else "")
                    )
            wall += time.perf_counter() - t0
            last = epoch == cfg.epochs - 1 or pos["step"] >= total
            if cfg.eval_each_epoch or last:
                top1 = evaluate(model, data.test, view, device=dist.device) if dist.main else float("nan")
                pos["history"].append({"epoch": epoch + 1, "step": pos["step"], "top1": top1})
                log(epoch_end=epoch + 1, epochs=cfg.epochs, top1=top1)
                if on_epoch is not None and dist.main:
                    on_epoch(epoch + 1, top1, pos["history"])
            pos["epoch"], pos["batch"] = epoch + 1, 0
            save()
            t0 = time.perf_counter()
            if last:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    if bad_step.item() >= 0:
        raise Diverged(f"loss became NaN/inf at step {bad_step.item()}; last good checkpoint: {checkpoint or 'none'}")
    return {
        "steps": pos["step"],
        "epochs": cfg.epochs,
        "top1": pos["history"][-1]["top1"] if pos["history"] else None,
        "history": pos["history"],
        "images_seen": seen,
        "images_per_s": seen / max(wall, 1e-9),
        "train_seconds": wall,
        "peak_memory_mb": peak_memory_mb(dist.device),
    }


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**10 if sys.platform != "darwin" else rss / 2**20


def save_checkpoint(path: Path, model, optimizer, identity: dict, cfg: TrainConfig, pos: dict) -> None:
    from lgtool.atomic import atomic_file

    state = {
        "identity": identity,
        "config": asdict(cfg),
        "position": pos,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model, optimizer, identity: dict, cfg: TrainConfig) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--resume {path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:  # noqa: BLE001 - any unreadable file is an input error here
        raise InputError(f"--resume {path}: not a readable lgtool checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "identity" not in state:
        raise InputError(f"--resume {path}: not an lgtool checkpoint")
    if state["identity"] != identity:
        diff = sorted(k for k in set(identity) | set(state["identity"]) if identity.get(k) != state["identity"].get(k))
        raise InputError(
            f"--resume {path}: checkpoint is for another run ({', '.join(diff)} differ: "
            f"{ {k: state['identity'].get(k) for k in diff} })"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state["position"]
