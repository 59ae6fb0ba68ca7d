"""Images/s of `lgtool learn` on an RGB ImageFolder against a bare timm loop with the same loader, model
and teacher, measured in one process.

    OMP_NUM_THREADS=1 python examples/loader_throughput.py [--data PATH] [--repeats 3] [--out result.json]

Without --data it writes a small synthetic ImageFolder (JPEGs, train/ and val/) and a small randomly
initialized ViT teacher (timm hub layout) to a temporary folder. Both sides read through
`FolderSplit.batches` (worker processes, persistent across epochs, prefetch, pinned memory on CUDA) and
train the Aux-Net of the same fresh learngene (`build_aux`) against the same teacher:

- learn: `lgtool.training.learn.learn(...)`, i.e. `loop.fit` with its schedule, checks, logging and checkpoints;
- bare: a loop of a few lines: teacher forward, KD loss, backward, timm's AdamW step.

Both are timed on fit's clock: the training time of each epoch, from asking for its batches to its last
optimizer step, without evaluation or checkpointing. Epoch 1 (worker start-up, first batches) is warm-up and
left out. The two sides alternate order from repeat to repeat; the headline ratio is the median of the
repeats' learn/bare ratios (paired, so slow drift in machine load cancels). Both loaders get
their transform and worker count from the same TrainConfig (`recipe=cfg`, as fit passes it).
Goal: learn/bare >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="an ImageFolder (train/ and val/, or class folders); default: a synthetic one")
    p.add_argument("--classes", type=int, default=4, help="synthetic data: classes")
    p.add_argument("--per-class", type=int, default=128, help="synthetic data: training images per class")
    p.add_argument("--image-px", type=int, default=80, help="synthetic data: JPEG side in pixels")
    p.add_argument("--img-size", type=int, default=64, help="model input size")
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--method", choices=("sws", "tleg"), default="sws")
    p.add_argument("--width", type=int, default=64, help="embedding width of the Aux-Net and the teacher")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--aux-depth", type=int, default=4, help="Aux-Net depth (SWS: split into 2 stages)")
    p.add_argument("--teacher-depth", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="per measurement; the first is warm-up")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: TrainConfig's)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first one is warm-up")
    return args


def synthetic_folder(root: Path, classes: int, per_class: int, px: int, seed: int = 0) -> Path:
    """RGB JPEGs: a colour per class over a gradient, plus noise (so decoding does real work)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, px)[None, :, None]
    for split, n in (("train", per_class), ("val", max(2, per_class // 8))):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            colour = rng.uniform(40, 215, 3)
            for i in range(n):
                img = colour * (0.6 + 0.4 * ramp) + rng.normal(0, 25, (px, px, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def make_teacher(out: Path, data_path: Path, args) -> Path:
    """A plain ViT from timm's init, written as a hub-layout folder: its speed, not its accuracy, matters."""
    from lgtool.hub import write_descnet
    from lgtool.training.data import load_data
    from lgtool.training.finetune import scratch_model

    data = load_data(str(data_path))
    model, arch, view = scratch_model(
        data.view, data.num_classes, args.width, args.teacher_depth, args.heads, args.img_size, args.patch_size
    )
    return write_descnet(model.state_dict(), arch, out, view.norm, {"init": "scratch"})


def gene_options(args) -> dict:
    if args.method == "sws":
        half = args.aux_depth // 2
        return {"stages": [args.aux_depth - half, half]}
    return {"aux_depth": args.aux_depth}


def train_config(args, steps_per_epoch: int):
    from lgtool.training.loop import TrainConfig

    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        warmup_epochs=0.0,
        log_every=steps_per_epoch,  # one log (and host sync) per epoch, at its last step
        eval_each_epoch=False,
        seed=0,
    )
    if args.workers is not None:
        cfg.workers = args.workers
    return cfg


def epoch_rate(seen: list[int], clock: list[float]) -> float:
    """Images/s after the first epoch, from the cumulative images and training seconds at each epoch end."""
    return (seen[-1] - seen[0]) / (clock[-1] - clock[0])


def run_learn(args, data_path: Path, teacher: Path, out: Path, steps_per_epoch: int) -> dict:
    from lgtool.training.learn import learn
    from lgtool.training.settings import LearnConfig

    ends = []

    def log(**event):
        if "step" in event:  # an epoch's last step: fit's clock is images seen / its running images/s
            seen = event["step"] * args.batch_size
            ends.append((seen, seen / event["images_per_s"]))

    cfg = train_config(args, steps_per_epoch)
    settings = LearnConfig(
        ancestor=str(teacher),
        method=args.method,
        data=str(data_path),
        output=out,
        width=args.width,
        num_heads=args.heads,
        patch_size=args.patch_size,
        img_size=args.img_size,
        **gene_options(args),
    )
    learn(settings, cfg, on_event=log, evaluate_ancestor=False)
    assert len(ends) == args.epochs, ends
    seen, clock = zip(*ends, strict=True)
    return {"images_per_s": epoch_rate(seen, clock), "epoch_seconds": _diffs(clock)}


def run_bare(args, data_path: Path, teacher_path: Path, device) -> dict:
    """The loop someone would write with timm: same data, teacher, Aux-Net, loss and optimizer."""
    import torch
    import torch.nn.functional as F
    from timm.optim import create_optimizer_v2

    from lgtool.learngene import init_learngene
    from lgtool.materialize import build_aux
    from lgtool.training.ancestor import ancestor_view, load_ancestor
    from lgtool.training.data import load_data

    cfg = train_config(args, 1)
    data = load_data(str(data_path), seed=cfg.seed)
    teacher = load_ancestor(str(teacher_path), num_classes=data.num_classes).to(device).requires_grad_(False)
    view = ancestor_view(teacher, data.view)
    view.img_size = args.img_size
    gene = init_learngene(
        args.method,
        width=args.width,
        num_heads=args.heads,
        img_size=view.img_size,
        patch_size=args.patch_size,
        in_chans=view.in_chans,
        num_classes=data.num_classes,
        seed=cfg.seed,
        input=view.norm,
        **gene_options(args),
    )
    torch.manual_seed(cfg.seed)
    model = build_aux(gene).to(device).train()
    opt = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = len(data.train) // args.batch_size
    seen, clock, total, n = [], [], 0.0, 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        batches = data.train.batches(
            view, args.batch_size, train=True, seed=cfg.seed, epoch=epoch, device=device, recipe=cfg
        )
        for x, y in batches:
            with torch.no_grad():
                t = teacher(x)
            s = model(x)
            ce = F.cross_entropy(s, y, label_smoothing=cfg.smoothing)
            kd = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="sum", log_target=True) / s.numel()
            loss = (1 - cfg.alpha) * ce + cfg.alpha * kd
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            n += len(y)
        loss.item()  # wait for the device, as fit's end-of-epoch log does
        total += time.perf_counter() - t0
        seen.append(n)
        clock.append(total)
    assert n == args.epochs * per_epoch * args.batch_size
    return {"images_per_s": epoch_rate(seen, clock), "epoch_seconds": _diffs(clock)}


def run_loader(args, data_path: Path, teacher: Path, device) -> dict:
    """The loader alone, timed the same way: how far above the training speed the data pipeline is."""
    from lgtool.training.ancestor import ancestor_view, load_ancestor
    from lgtool.training.data import load_data

    cfg = train_config(args, 1)
    data = load_data(str(data_path), seed=cfg.seed)
    view = ancestor_view(load_ancestor(str(teacher), num_classes=data.num_classes), data.view)
    view.img_size = args.img_size
    seen, clock, total, n = [], [], 0.0, 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for batch in data.train.batches(
            view, args.batch_size, train=True, seed=cfg.seed, epoch=epoch, device=device, recipe=cfg
        ):
            n += len(batch[1])
        batch[0].sum().item()  # the last copy to the device has landed
        total += time.perf_counter() - t0
        seen.append(n)
        clock.append(total)
    return {"images_per_s": epoch_rate(seen, clock), "epoch_seconds": _diffs(clock)}


def _diffs(clock) -> list[float]:
    return [round(b - a, 4) for a, b in zip((0.0, *clock[:-1]), clock, strict=True)]


def machine(device) -> dict:
    import timm
    import torch

    from lgtool.training.data import usable_workers

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cpus_usable": usable_workers(1 << 30),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def main(argv=None):
    args = parse_args(argv)
    from lgtool.base.compat import import_timm

    import_timm()
    import torch

    from lgtool.training.data import load_data, usable_workers
    from lgtool.training.loop import Dist

    device = Dist.from_env().device  # where fit trains
    with tempfile.TemporaryDirectory(prefix="lgtool-loader-") as tmp:
        tmp = Path(tmp)
        started, load = time.perf_counter(), os.getloadavg()
        data_path = (
            Path(args.data)
            if args.data
            else synthetic_folder(tmp / "data", args.classes, args.per_class, args.image_px)
        )
        teacher = make_teacher(tmp / "teacher", data_path, args)
        data = load_data(str(data_path))
        steps_per_epoch = len(data.train) // args.batch_size
        workers = usable_workers(train_config(args, 1).workers)
        print(
            f"{len(data.train)} training images of {data.num_classes} classes, batch {args.batch_size} "
            f"({steps_per_epoch} steps/epoch), {args.method.upper()} Aux-Net width {args.width} depth "
            f"{args.aux_depth}, teacher depth {args.teacher_depth}, {args.img_size} px, {workers} loader workers, "
            f"{device}, {torch.get_num_threads()} torch threads (setup {time.perf_counter() - started:.1f}s)"
        )
        rows = []
        for r in range(args.repeats):
            order = ("learn", "bare") if r % 2 == 0 else ("bare", "learn")
            row = {"repeat": r + 1, "order": "/".join(order)}
            for side in order:
                t = time.perf_counter()
                if side == "learn":
                    row["learn"] = run_learn(args, data_path, teacher, tmp / f"gene{r}.safetensors", steps_per_epoch)
                else:
                    row["bare"] = run_bare(args, data_path, teacher, device)
                row[f"{side}_wall_s"] = round(time.perf_counter() - t, 2)
            row["ratio"] = row["learn"]["images_per_s"] / row["bare"]["images_per_s"]
            rows.append(row)
            print(
                f"repeat {r + 1} ({row['order']}): learn {row['learn']['images_per_s']:8.1f} img/s  "
                f"bare {row['bare']['images_per_s']:8.1f} img/s  ratio {row['ratio']:.3f}",
                flush=True,
            )
        loader = run_loader(args, data_path, teacher, device)
    rates = {side: statistics.median(r[side]["images_per_s"] for r in rows) for side in ("learn", "bare")}
    rates["loader alone"] = loader["images_per_s"]
    result = {
        "learn_images_per_s": rates["learn"],
        "bare_images_per_s": rates["bare"],
        "ratio": statistics.median(r["ratio"] for r in rows),
        "ratio_of_medians": rates["learn"] / rates["bare"],
        "ratio_of_best": max(r["learn"]["images_per_s"] for r in rows) / max(r["bare"]["images_per_s"] for r in rows),
        "goal": 0.95,
        "loader_alone_images_per_s": loader["images_per_s"],
        "timed_epochs_per_measurement": args.epochs - 1,
        "workers": workers,
        "settings": vars(args),
        "machine": machine(device),
        "load_average_before_after": [load[0], os.getloadavg()[0]],
        "repeats": rows,
        "loader_alone": loader,
    }
    print(f"\n{'':14}{'images/s':>10}  (median of {args.repeats}; epochs 2-{args.epochs} of each run)")
    for side, rate in rates.items():
        print(f"{side:14}{rate:10.1f}")
    ratio, of_medians = result["ratio"], result["ratio_of_medians"]
    print(f"{'learn / bare':14}{ratio:10.3f}  (median of the repeats' ratios; goal >= 0.95)")
    print(f"{'':14}{of_medians:10.3f}  (ratio of the medians)")
    print(f"{'':14}{result['ratio_of_best']:10.3f}  (ratio of the best repeats: the least disturbed by other work)")
    print(f"load average before/after: {load[0]:.2f} / {os.getloadavg()[0]:.2f} (other work on the machine adds noise)")
    print(f"total {time.perf_counter() - started:.0f}s on {result['machine']['cpu']}, {result['machine']['device']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
