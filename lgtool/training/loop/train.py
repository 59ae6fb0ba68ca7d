"""The training loop for `learn` (distil an Aux-Net from an ancestor), WAVE calibration and `finetune`.

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
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from lgtool.format.atomic import WriteFailed
from lgtool.format.errors import InputError, LgtoolError
from lgtool.format.interrupt import Interrupted, defer_signals, stopped_by
from lgtool.training import recipe
from lgtool.training.data import batch_generator
from lgtool.training.loop.checkpoint import load_checkpoint, save_checkpoint
from lgtool.training.settings import TrainConfig
from lgtool.training.teacher_cache import TeacherCache, inputs_repeat


class Diverged(LgtoolError):
    exit_code = 1


def lr_at(step: int, total: int, warmup: int, peak: float, cfg: TrainConfig) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, named_params, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on 1-D tensors, position embeddings, class tokens, and what the model names in
    timm's `no_weight_decay()` convention."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in named_params:
        exempt = p.ndim <= 1 or name in skip or name.endswith(("pos_embed", "cls_token"))
        (no_decay if exempt else decay).append(p)
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

    One loop over micro-batches: every `accum_steps` of them make an optimizer step, every epoch's last one
    also evaluates, calls `on_epoch(epoch, top1, history, model)` on rank 0 with the model it evaluated (the
    EMA with --model-ema; e.g. to keep the best one) and saves. With --mixup/--cutmix the teacher sees the
    mixed images. With --model-ema, `model` holds the EMA weights when fit returns.
    `identity` (what is trained: method, architecture, ...) is saved in checkpoints and must match on resume."""
    dist = Dist.from_env()
    log = log if (log and dist.main) else (lambda *a, **k: None)
    model.to(dist.device).train()
    for n, p in model.named_parameters():
        p.requires_grad_(trainable is None or trainable(n))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, named, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    average = recipe.ema(cfg, model)  # from the initial weights, before DDP wraps the model
    ddp = None
    if dist.world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[dist.device] if dist.device.type == "cuda" else None,
            find_unused_parameters=getattr(model, "family", None) is not None,  # a step trains some sizes only
        )
    step_model = torch.compile(ddp or model) if cfg.compile else (ddp or model)
    use_teacher = teacher is not None and cfg.kd != "none" and cfg.alpha > 0
    loss_settings = dict(alpha=cfg.alpha, tau=cfg.tau, kd=cfg.kd, reduction=cfg.kd_reduction, smoothing=cfg.smoothing)
    live = inputs_repeat(cfg, data.train) if use_teacher else None  # why the teacher cannot be cached, if so
    if use_teacher:
        teacher.to(dist.device).eval().requires_grad_(False)
    cache = TeacherCache(teacher) if use_teacher and live is None else None
    mix = recipe.mixup(cfg, len(data.classes))

    micro_per_epoch = len(data.train) // (cfg.batch_size * dist.world) // cfg.accum_steps * cfg.accum_steps
    if micro_per_epoch == 0:
        raise InputError(
            f"--batch-size {cfg.batch_size} x --accum-steps {cfg.accum_steps} (x {dist.world} ranks) is larger "
            f"than the {len(data.train)} training images"
        )
    steps_per_epoch = micro_per_epoch // cfg.accum_steps
    total = min(cfg.epochs * steps_per_epoch, cfg.max_steps or cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    peak_lr = recipe.scaled_lr(cfg.lr, recipe.global_batch(cfg.batch_size, cfg.accum_steps, dist.world), cfg)
    pos = {"epoch": 0, "batch": 0, "step": 0, "history": [], "teacher_images": 0}
    if resume is not None:
        pos = {"teacher_images": None, **load_checkpoint(resume, model, optimizer, identity, cfg, average, cache)}
    else:
        random.seed(cfg.seed + dist.rank)
        torch.manual_seed(cfg.seed + dist.rank)  # drop path; data order has its own seeded generators

    # Ctrl-C or SIGTERM (torchrun forwards both to every rank): each rank saves (rank 0 writes) and stops
    interrupted, restore_signals = defer_signals()
    bad_step = torch.full((), -1, device=dist.device)  # first non-finite loss, checked without a host sync
    running, seen, wall, t0 = torch.zeros((), device=dist.device), 0, 0.0, time.perf_counter()

    def check_finite():
        if bad_step.item() >= 0:  # never save or keep a diverged state: the last good checkpoint stays
            good = checkpoint if checkpoint is not None and Path(checkpoint).is_file() else None
            raise Diverged(
                f"loss became NaN/inf at step {bad_step.item()}; "
                + (f"last good checkpoint: {good}" if good else "nothing was written; lower --lr or check the inputs")
            )

    def save():
        check_finite()
        if checkpoint is not None:
            if dist.main:
                try:
                    save_checkpoint(checkpoint, model, optimizer, identity, cfg, pos, average, cache)
                except WriteFailed as e:  # e.g. a full disk: the previous checkpoint, if any, is intact
                    earlier = Path(checkpoint).is_file()
                    kept = f"continue from it with --resume {checkpoint}" if earlier else "no checkpoint was kept"
                    raise e.keeping(kept) from None
            dist.barrier()

    try:
        for epoch, i, x, y in _micro_batches(data.train, view, cfg, dist, pos, micro_per_epoch):
            last_micro = (i + 1) % cfg.accum_steps == 0
            if mix is not None:  # before the teacher: it must see the images the student sees
                x, y = recipe.apply_mixup(mix, x, y, batch_generator(cfg.seed + 7919 * dist.rank, epoch, i))
            with ddp.no_sync() if ddp is not None and not last_micro else nullcontext():  # all-reduce once per step
                with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    t_logits = teacher_logits(teacher, cache, x, pos, dist.world) if use_teacher else None
                    loss = student_loss(step_model(x).float(), t_logits, y, loss_settings)
                (loss / cfg.accum_steps).backward()
            running += loss.detach()
            bad_step = torch.where(~loss.detach().isfinite() & (bad_step < 0), pos["step"], bad_step)
            seen += len(y) * dist.world
            pos["batch"] = i + 1
            if not last_micro:
                continue
            for group in optimizer.param_groups:
                group["lr"] = lr_at(pos["step"], total, warmup, peak_lr, cfg)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            pos["step"] += 1
            if average is not None:
                average.update(model, step=pos["step"])
            done = pos["step"] >= total
            if pos["step"] % cfg.log_every == 0:  # the only host sync between epochs
                check_finite()
                loss_avg = (running / cfg.log_every / cfg.accum_steps).item()
                speed = seen / max(wall + time.perf_counter() - t0, 1e-9)
                log(step=pos["step"], total=total, epoch=epoch, loss=loss_avg, images_per_s=speed)
                running.zero_()
            if pos["batch"] == micro_per_epoch or done:  # epoch end: evaluate (untimed), then save
                wall += time.perf_counter() - t0
                check_finite()
                if cfg.eval_each_epoch or done or epoch == cfg.epochs - 1:
                    judged = model if average is None else average.module
                    top1 = evaluate(judged, data.test, view, device=dist.device) if dist.main else float("nan")
                    pos["history"].append({"epoch": epoch + 1, "step": pos["step"], "top1": top1})
                    log(epoch_end=epoch + 1, epochs=cfg.epochs, top1=top1)
                    if on_epoch is not None and dist.main:
                        on_epoch(epoch + 1, top1, pos["history"], judged)
                pos["epoch"], pos["batch"] = epoch + 1, 0
                save()
                t0 = time.perf_counter()
            elif cfg.save_every and pos["step"] % cfg.save_every == 0:
                save()
            if interrupted:
                save()
                hint = f"checkpoint saved to {checkpoint}, continue with --resume {checkpoint}" if checkpoint else ""
                signum = interrupted[0]
                raise Interrupted(f"{stopped_by(signum)} at step {pos['step']}" + (f"; {hint}" if hint else ""), signum)
            if done:
                break
    finally:
        restore_signals()
    check_finite()
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    return {
        "steps": pos["step"],
        "epochs": cfg.epochs,
        "lr": peak_lr,
        "top1": pos["history"][-1]["top1"] if pos["history"] else None,
        "history": pos["history"],
        "images_seen": seen,
        "teacher_images": pos["teacher_images"] if use_teacher else 0,  # forwards the teacher actually ran
        "teacher_live": live,
        "images_per_s": seen / max(wall, 1e-9),
        "train_seconds": wall,
        "peak_memory_mb": peak_memory_mb(dist.device),
    }


def student_loss(logits: torch.Tensor, t_logits, y, settings: dict) -> torch.Tensor:
    """`recipe.kd_loss`; for a family's stacked logits (sizes, batch, classes), the mean over its sizes."""
    if logits.dim() == 2:
        return recipe.kd_loss(logits, t_logits, y, **settings)
    return torch.stack([recipe.kd_loss(one, t_logits, y, **settings) for one in logits]).mean()


@torch.no_grad()
def teacher_logits(teacher, cache, x, pos: dict, world: int) -> torch.Tensor:
    """The teacher's logits for `x`: from the cache where it has them; counts the forwards actually run
    (None once a resumed checkpoint did not count them)."""
    before = cache.forwards if cache is not None else 0
    logits = cache(x) if cache is not None else teacher(x).float()
    ran = cache.forwards - before if cache is not None else len(x)
    if pos["teacher_images"] is not None:
        pos["teacher_images"] += ran * world
    return logits


def _micro_batches(split, view, cfg: TrainConfig, dist: Dist, pos: dict, per_epoch: int):
    """(epoch, index in epoch, images, labels) from where `pos` stands to the last epoch."""
    for epoch in range(pos["epoch"], cfg.epochs):
        start = pos["batch"] if epoch == pos["epoch"] else 0
        batches = split.batches(
            view,
            cfg.batch_size,
            train=True,
            seed=cfg.seed,
            epoch=epoch,
            start=start,
            rank=dist.rank,
            world=dist.world,
            device=dist.device,
            recipe=cfg,
        )
        for i, (x, y) in enumerate(batches, start=start):
            if i >= per_epoch:
                break
            yield epoch, i, x, y


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**10 if sys.platform != "darwin" else rss / 2**20
