"""Learn-step throughput and peak memory of each method vs a bare torch loop, measured in one run.

The baseline trains a plain timm ViT of the Aux-Net's size (same width, depth, heads) with the same
teacher, batch, data pipeline, loss and thread count, in a loop of a few lines. lgtool runs its own
`loop.fit` on the Aux-Net, whose block weights the rule rebuilds on every forward. Each measurement is
a fresh subprocess (so peak RSS is its own); they alternate, and the median is reported.

    python examples/bench_learn.py [--steps 60] [--repeats 3] [--width 64] [--depth 8] [--json]

Targets: throughput >= 0.9x the bare loop, peak memory <= 1.15x. Needs Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

METHODS = ("sws", "tleg", "wave")


def worker(kind: str, steps: int, width: int, depth: int, batch: int) -> dict:
    """One measurement in this process: `kind` is a method name or "bare"."""
    import resource
    import time

    import torch

    from lgtool.base.arch import Arch, build_vit
    from lgtool.learngene import init_learngene
    from lgtool.materialize import build_aux
    from lgtool.training.data import load_data
    from lgtool.training.loop import TrainConfig, fit
    from lgtool.training.recipe import kd_loss

    torch.manual_seed(0)
    data = load_data("fashion-mnist", train_samples=batch * (steps + 10))
    teacher = build_vit(
        Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=128, depth=8, num_heads=2, num_classes=10)
    )
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, warmup_epochs=0, max_steps=steps, eval_each_epoch=False)
    if kind != "bare":
        options = {"stages": [2] * (depth // 2)} if kind == "sws" else {"aux_depth": depth}
        gene = init_learngene(kind, width=width, img_size=28, patch_size=7, in_chans=1, num_classes=10, **options)
        judged = data.test.subset(torch.arange(256))  # fit evaluates once at the end; keep that small
        summary = fit(build_aux(gene), data, data.view, cfg, identity={}, teacher=teacher, evaluate_on=judged)
        images_per_s = summary["images_per_s"]
    else:
        model = build_vit(
            Arch(
                img_size=28,
                patch_size=7,
                in_chans=1,
                embed_dim=width,
                depth=depth,
                num_heads=max(1, width // 64),
                num_classes=10,
            )
        )
        teacher.eval().requires_grad_(False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        settings = dict(alpha=cfg.alpha, tau=cfg.tau, kd=cfg.kd, reduction=cfg.kd_reduction, smoothing=cfg.smoothing)
        batches = data.train.batches(data.view, batch, train=True)
        t0, seen = time.perf_counter(), 0
        for _, (x, y) in zip(range(steps), batches, strict=False):
            with torch.no_grad():
                t = teacher(x)
            loss = kd_loss(model(x), t, y, **settings)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
        images_per_s = seen / (time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "images_per_s": images_per_s, "peak_rss_mb": rss_mb}


def measure(kind: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--steps",
        str(args.steps),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
        "--batch",
        str(args.batch),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.width, args.depth, args.batch)))
        return
    samples = {k: [] for k in ("bare", *METHODS)}
    for _ in range(args.repeats):
        for kind in samples:  # interleaved, so drift on a shared machine hits all alike
            samples[kind].append(measure(kind, args))
    med = {
        k: {m: statistics.median(s[m] for s in v) for m in ("images_per_s", "peak_rss_mb")} for k, v in samples.items()
    }
    rows = [
        {
            "kind": k,
            **v,
            "throughput_ratio": round(v["images_per_s"] / med["bare"]["images_per_s"], 3),
            "memory_ratio": round(v["peak_rss_mb"] / med["bare"]["peak_rss_mb"], 3),
        }
        for k, v in med.items()
    ]
    table = [
        "| loop | images/s | peak RSS (MB) | throughput vs bare (≥ 0.9) | memory vs bare (≤ 1.15) |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['kind']} | {r['images_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['throughput_ratio']:.2f}× | "
        f"{r['memory_ratio']:.2f}× |"
        for r in rows
    ]
    print("\n".join(table), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"config": vars(args), "rows": rows, "samples": samples}))


if __name__ == "__main__":
    main()
