"""The training loop, read top to bottom: setup, the schedule, the step, evaluation at each epoch end, a checkpoint.

AdamW (no decay on 1-D tensors, position embeddings and WAVE scalers), linear warmup + cosine per step,
gradient accumulation, optional bf16 autocast and torch.compile, evaluation each epoch, atomic
checkpoints every epoch and every `save_every` steps, exact resume, DDP when WORLD_SIZE > 1.
The loss is `recipe.kd_loss`: cross-entropy, plus distillation from a teacher when one is given.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lgtool.base.errors import InputError, LgtoolError, WriteFailed
from lgtool.base.interrupt import Interrupted, defer_signals, stopped_by
from lgtool.training import recipe
from lgtool.training.data import batch_generator
from lgtool.training.loop.checkpoint import Position, load_checkpoint, save_checkpoint
from lgtool.training.loop.distributed import Dist, peak_memory_mb
from lgtool.training.settings import TrainConfig
from lgtool.training.teacher_cache import TeacherCache, inputs_repeat


class Diverged(LgtoolError):
    """The loss became NaN or infinite: training stops, and the last good checkpoint is kept as it was."""

    exit_code = 1


@torch.no_grad()
def evaluate(model: nn.Module, split, view, batch_size: int = 256, device="cpu") -> float:
    """Top-1 accuracy of `model` on `split`, seen through `view`."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in split.batches(view, batch_size, train=False, device=device):
        correct += (model(x).argmax(-1) == y).sum()
        total += len(y)
    model.train(was_training)
    return (correct / max(1, total)).item()


@dataclass(frozen=True)
class Schedule:
    """How long training runs and at what rate: micro-batches per epoch (whole optimizer steps), optimizer steps in
    all, warmup steps, and the rate's peak (scaled to the global batch) and floor."""

    micro_per_epoch: int
    total: int
    warmup: int
    peak: float
    floor: float

    @classmethod
    def of(cls, cfg: TrainConfig, images: int, world: int) -> Schedule:
        micro = images // (cfg.batch_size * world) // cfg.accum_steps * cfg.accum_steps
        if micro == 0:
            raise InputError(
                f"--batch-size {cfg.batch_size} x --accum-steps {cfg.accum_steps} (x {world} ranks) is larger "
                f"than the {images} training images"
            )
        per_epoch = micro // cfg.accum_steps
        total = min(cfg.epochs * per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
        peak = recipe.scaled_lr(cfg.lr, recipe.global_batch(cfg.batch_size, cfg.accum_steps, world), cfg)
        return cls(micro, total, int(cfg.warmup_epochs * per_epoch), peak, cfg.min_lr)

    def lr(self, step: int) -> float:
        """Linear warmup to the peak, then a cosine down to the floor at the last step."""
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class _Run:
    """What `fit` sets up once and every step reads: its arguments and what it built from them."""

    cfg: TrainConfig
    dist: Dist
    model: nn.Module
    step_model: nn.Module  # `model` in DDP and compiled, as configured: what the step runs
    ddp: nn.parallel.DistributedDataParallel | None
    optimizer: torch.optim.Optimizer
    average: object  # timm's EMA of `model` with --model-ema, else None
    teacher: nn.Module | None  # None unless distilling
    cache: TeacherCache | None  # the teacher's logits, where its inputs repeat
    live: str | None  # why the teacher cannot be cached, if so
    mix: object  # timm's Mixup with --mixup/--cutmix, else None
    schedule: Schedule
    view: object
    evaluate_on: object  # the split evaluated at epoch ends
    checkpoint: Path | None
    identity: dict
    on_event: Callable
    on_epoch: Callable | None


@dataclass
class _Meter:
    """What is measured and not saved. The running loss and the first non-finite loss's step stay on the device,
    so that a step needs no host sync."""

    running: torch.Tensor
    bad_step: torch.Tensor
    seen: int = 0  # images, over all ranks
    wall: float = 0.0  # seconds trained, evaluation excluded
    t0: float = field(default_factory=time.perf_counter)

    @classmethod
    def on(cls, device) -> _Meter:
        return cls(torch.zeros((), device=device), torch.full((), -1, device=device))


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
    on_event=None,
    on_epoch=None,
    evaluate_on=None,
) -> dict:
    """Train `model` (its parameters, or those whose names pass `trainable`) and return a summary.

    One loop over micro-batches: every `accum_steps` of them make an optimizer step, every epoch's last one
    also evaluates on `evaluate_on` (default `data.test`), calls `on_epoch(epoch, top1, history, model)` on
    rank 0 with the model it evaluated (the EMA with --model-ema; e.g. to keep the best one) and saves. With
    --mixup/--cutmix the teacher sees the mixed images. With --model-ema, `model` holds the EMA weights when
    fit returns. `identity` (what is trained: method, architecture, ...) is saved in checkpoints and must
    match on resume."""
    evaluate_on = data.test if evaluate_on is None else evaluate_on
    run = _setup(model, data, view, cfg, teacher, trainable, on_event,
                 evaluate_on=evaluate_on, checkpoint=checkpoint, identity=identity, on_epoch=on_epoch)  # fmt: skip
    pos, meter = _start(run, resume), _Meter.on(run.dist.device)
    # Ctrl-C or SIGTERM (torchrun forwards both to every rank): each rank saves (rank 0 writes) and stops
    interrupted, restore_signals = defer_signals()
    try:
        for epoch, i, x, y in _micro_batches(data.train, view, cfg, run.dist, pos, run.schedule.micro_per_epoch):
            if not _forward_backward(run, pos, meter, epoch, i, x, y):
                continue  # gradients accumulate until the step's last micro-batch
            _optimizer_step(run, pos, meter, epoch)
            done = pos.step >= run.schedule.total
            if pos.batch == run.schedule.micro_per_epoch or done:
                _epoch_end(run, pos, meter, epoch, done)
            elif cfg.save_every and pos.step % cfg.save_every == 0:
                _save(run, pos, meter)
            if interrupted:
                _stop(run, pos, meter, interrupted[0])
            if done:
                break
    finally:
        restore_signals()
    _check_finite(run, meter)
    if run.average is not None:
        model.load_state_dict(run.average.module.state_dict())
    return _summary(run, pos, meter)


def _setup(model, data, view, cfg: TrainConfig, teacher, trainable, on_event, **asked) -> _Run:
    """The ranks, the trainable parameters and their optimizer, the EMA, DDP and compile, the teacher and its
    cache, mixing, and the schedule; `asked` are fit's other arguments, kept as given."""
    dist = Dist.from_env()
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
    if not (teacher is not None and cfg.kd != "none" and cfg.alpha > 0):
        teacher = None  # not distilling
    live = inputs_repeat(cfg, data.train) if teacher is not None else None
    if teacher is not None:
        teacher.to(dist.device).eval().requires_grad_(False)
    cache = TeacherCache(teacher) if teacher is not None and live is None else None
    mix = recipe.mixup(cfg, len(data.classes))
    schedule = Schedule.of(cfg, len(data.train), dist.world)
    on_event = on_event if (on_event and dist.main) else (lambda *a, **k: None)
    return _Run(cfg, dist, model, step_model, ddp, optimizer, average, teacher, cache, live, mix, schedule, view,
                on_event=on_event, **asked)  # fmt: skip


def param_groups(model: nn.Module, named_params, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on 1-D tensors, position embeddings, class tokens, and what the model names in
    timm's `no_weight_decay()` convention.

    Not `timm.optim.param_groups_weight_decay`: it puts the no-decay group first and drops an empty one, so a
    checkpoint's optimizer state would resume into the wrong group, and it exempts every `*.bias`, which would
    stop decaying WAVE's stacked per-layer biases (2-D) and so change how WAVE trains."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in named_params:
        exempt = p.ndim <= 1 or name in skip or name.endswith(("pos_embed", "cls_token"))
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _start(run: _Run, resume: Path | None) -> Position:
    """Where the resumed checkpoint stopped, or the beginning with this rank's seeds."""
    if resume is not None:
        return load_checkpoint(resume, run.model, run.optimizer, run.identity, run.cfg, run.average, run.cache,
                               schedule=run.schedule)  # fmt: skip
    random.seed(run.cfg.seed + run.dist.rank)
    torch.manual_seed(run.cfg.seed + run.dist.rank)  # drop path; data order has its own seeded generators
    return Position()


def _micro_batches(split, view, cfg: TrainConfig, dist: Dist, pos: Position, per_epoch: int):
    """(epoch, index in epoch, images, labels) from where `pos` stands to the last epoch."""
    for epoch in range(pos.epoch, cfg.epochs):
        start = pos.batch if epoch == pos.epoch else 0
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


def _forward_backward(run: _Run, pos: Position, meter: _Meter, epoch: int, i: int, x, y) -> bool:
    """One micro-batch's forward and backward; True when it is the last of an optimizer step."""
    cfg, dist = run.cfg, run.dist
    last_micro = (i + 1) % cfg.accum_steps == 0
    if run.mix is not None:  # before the teacher: it must see the images the student sees
        x, y = recipe.apply_mixup(run.mix, x, y, batch_generator(cfg.seed + 7919 * dist.rank, epoch, i))
    with run.ddp.no_sync() if run.ddp is not None and not last_micro else nullcontext():  # all-reduce once a step
        with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            t_logits = teacher_logits(run.teacher, run.cache, x, pos, dist.world) if run.teacher is not None else None
            loss = student_loss(run.step_model(x).float(), t_logits, y, cfg)
        (loss / cfg.accum_steps).backward()
    meter.running += loss.detach()
    meter.bad_step = torch.where(~loss.detach().isfinite() & (meter.bad_step < 0), pos.step, meter.bad_step)
    meter.seen += len(y) * dist.world
    if pos.images is not None:
        pos.images += len(y) * dist.world
    pos.batch = i + 1
    return last_micro


def student_loss(logits: torch.Tensor, t_logits, y, cfg: TrainConfig) -> torch.Tensor:
    """`recipe.kd_loss`; for a family's stacked logits (sizes, batch, classes), the mean over its sizes."""
    settings = dict(alpha=cfg.alpha, tau=cfg.tau, kd=cfg.kd, reduction=cfg.kd_reduction, smoothing=cfg.smoothing)
    if logits.dim() == 2:
        return recipe.kd_loss(logits, t_logits, y, **settings)
    return torch.stack([recipe.kd_loss(one, t_logits, y, **settings) for one in logits]).mean()


@torch.no_grad()
def teacher_logits(teacher, cache, x, pos: Position, world: int) -> torch.Tensor:
    """The teacher's logits for `x`: from the cache where it has them; counts the forwards actually run
    (unless a resumed checkpoint did not count them)."""
    before = cache.forwards if cache is not None else 0
    logits = cache(x) if cache is not None else teacher(x).float()
    ran = cache.forwards - before if cache is not None else len(x)
    if pos.teacher_images is not None:
        pos.teacher_images += ran * world
    return logits


def _optimizer_step(run: _Run, pos: Position, meter: _Meter, epoch: int) -> None:
    """The step at the schedule's rate, the EMA's update, and every `log_every` steps the mean loss and speed."""
    cfg = run.cfg
    for group in run.optimizer.param_groups:
        group["lr"] = run.schedule.lr(pos.step)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    pos.step += 1
    if run.average is not None:
        run.average.update(run.model, step=pos.step)
    if pos.step % cfg.log_every == 0:  # the only host sync between epochs
        _check_finite(run, meter)
        loss = (meter.running / cfg.log_every / cfg.accum_steps).item()
        speed = meter.seen / max(meter.wall + time.perf_counter() - meter.t0, 1e-9)
        run.on_event(step=pos.step, total=run.schedule.total, epoch=epoch, loss=loss, images_per_s=speed)
        meter.running.zero_()


def _epoch_end(run: _Run, pos: Position, meter: _Meter, epoch: int, done: bool) -> None:
    """Evaluate (untimed; the EMA with --model-ema) and tell `on_epoch` on rank 0, then save."""
    cfg, dist = run.cfg, run.dist
    meter.wall += time.perf_counter() - meter.t0
    _check_finite(run, meter)
    if cfg.eval_each_epoch or done or epoch == cfg.epochs - 1:
        judged = run.model if run.average is None else run.average.module
        top1 = evaluate(judged, run.evaluate_on, run.view, device=dist.device) if dist.main else float("nan")
        pos.history.append({"epoch": epoch + 1, "step": pos.step, "top1": top1})
        run.on_event(epoch_end=epoch + 1, epochs=cfg.epochs, top1=top1)
        if run.on_epoch is not None and dist.main:
            run.on_epoch(epoch + 1, top1, pos.history, judged)
    pos.epoch, pos.batch = epoch + 1, 0
    _save(run, pos, meter)
    meter.t0 = time.perf_counter()


def _check_finite(run: _Run, meter: _Meter) -> None:
    """Stop at a non-finite loss: a diverged state is never saved, and the last good checkpoint stays."""
    if meter.bad_step.item() >= 0:
        good = run.checkpoint if run.checkpoint is not None and Path(run.checkpoint).is_file() else None
        raise Diverged(
            f"loss became NaN/inf at step {meter.bad_step.item()}; "
            + (f"last good checkpoint: {good}" if good else "nothing was written; lower --lr or check the inputs")
        )


def _save(run: _Run, pos: Position, meter: _Meter) -> None:
    """The checkpoint, written by rank 0 while the others wait."""
    _check_finite(run, meter)
    if run.checkpoint is None:
        return
    if run.dist.main:
        try:
            save_checkpoint(
                run.checkpoint, run.model, run.optimizer, run.identity, run.cfg, pos, run.average, run.cache
            )
        except WriteFailed as e:  # e.g. a full disk: the previous checkpoint, if any, is intact
            kept = Path(run.checkpoint).is_file()
            hint = f"continue from it with --resume {run.checkpoint}" if kept else "no checkpoint was kept"
            raise e.keeping(hint) from None
    run.dist.barrier()


def _stop(run: _Run, pos: Position, meter: _Meter, signum: int) -> None:
    """Save, then raise Interrupted with how to continue."""
    _save(run, pos, meter)
    hint = f"checkpoint saved to {run.checkpoint}, continue with --resume {run.checkpoint}" if run.checkpoint else ""
    raise Interrupted(f"{stopped_by(signum)} at step {pos.step}" + (f"; {hint}" if hint else ""), signum)


def _summary(run: _Run, pos: Position, meter: _Meter) -> dict:
    return {
        "steps": pos.step,
        "epochs": run.cfg.epochs,
        "lr": run.schedule.peak,
        "top1": pos.history[-1]["top1"] if pos.history else None,
        "history": pos.history,
        "images_seen": meter.seen,  # by this process
        "images_trained": pos.images,  # by the whole training, resumes included (None: not counted before a resume)
        "teacher_images": pos.teacher_images if run.teacher is not None else 0,  # forwards the teacher ran
        "teacher_live": run.live,
        "images_per_s": meter.seen / max(meter.wall, 1e-9),
        "train_seconds": meter.wall,
        "peak_memory_mb": peak_memory_mb(run.dist.device),
    }
