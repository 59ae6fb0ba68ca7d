"""`lgtool bench`: is a learngene the cheapest way to a family of sizes, against the best alternative?

For every size (depths at the family width, and more widths where asked):
- sws, tleg, wave: expanded from a learngene distilled once from the ancestor (WAVE first calibrates the
  scalers of every size other than its Aux size, templates frozen), then fine-tuned for `epochs` (0: as
  expanded);
- the alternatives a practitioner holding the ancestor would try: scratch and kd-scratch (timm's init, the
  second distilled from the ancestor with the loss `learn` uses), weight-selection(+kd) (cut from the
  ancestor's own weights, head kept when the labels match). Each doubles its epochs until it matches the
  best learngene there or gains less than `min_gain`, up to `max_epochs`.
Every init picks its learning rate, warmup (and weight selection its layer policy) on a validation split
carved from the training data; the test split only produces the reported numbers. What the routes cost,
in FLOPs and images, and which is cheapest per size, is `cost.py`'s business.
"""

from __future__ import annotations

import time
from pathlib import Path

from lgtool.bench.cost import (
    LEARNGENES,
)
from lgtool.bench.plan import (
    CURVE_ORDER,
    DEFAULT_ANCESTORS,
    SCHEMA,
    BenchConfig,
    ancestor_cost,
    check_family,
    is_share,
    previous_results,
    row_key,
)
from lgtool.bench.report import write_report
from lgtool.bench.rows import Bench
from lgtool.format.arch import HEAD_DIM, Arch, default_patch_size, parse_width
from lgtool.format.atomic import write_json
from lgtool.format.errors import InputError, UsageError
from lgtool.learngene import load_learngene
from lgtool.training.ancestor import (
    ancestor_heads,
    ancestor_view,
    is_vit,
    load_ancestor,
    resolve_ancestor,
)
from lgtool.training.data import load_data
from lgtool.training.loop import evaluate


def run_bench(
    cfg: BenchConfig,
    out: Path,
    *,
    ancestor: str | None = None,
    learngenes: list[str] = (),
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    resume: bool = False,
    log=print,
) -> dict:
    out = Path(out)
    started = time.perf_counter()
    say = log

    def log(msg):
        say(f"[{time.perf_counter() - started:5.0f}s] {msg}")

    ancestor = ancestor or DEFAULT_ANCESTORS.get(data)
    if ancestor is None:
        raise UsageError(f"--ancestor is required for --data {data} (a trained model on these labels)")
    # Everything is validated before OUT is created: the cheap checks first, then data and ancestor are loaded.
    results_path = out / "results.json"
    if results_path.is_file() and not resume:
        raise InputError(f"{out} already holds a bench; pass --resume to continue it or choose another -o")
    previous = previous_results(results_path) if resume and results_path.is_file() else {}
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; choose another -o")
    resolve_ancestor(ancestor)
    given = {load_learngene(p).method: p for p in learngenes}  # header, tensors and finiteness, before data
    check_family(cfg, ancestor, ancestor_heads(ancestor), given)  # a folder ancestor declares its heads

    dataset = load_data(data, data_dir, cfg.train_samples, seed=cfg.seed)
    if len(dataset.train) * (1 - cfg.val_fraction) < cfg.batch_size + dataset.num_classes:
        raise InputError(
            f"--data {data}: {len(dataset.train)} training images, fewer than one batch of the bench "
            f"({cfg.batch_size} images) once the validation split ({cfg.val_fraction:.0%}) is held out"
        )
    # Every choice (rates, warmup, layer policy, when a curve has matched) is made on this split.
    tuning = dataset.held_out(cfg.val_fraction, cfg.seed + 1)
    teacher = load_ancestor(ancestor, num_classes=dataset.num_classes)
    vit_ancestor = is_vit(teacher)
    view = ancestor_view(teacher, dataset.view)
    # The ancestor's head count by default: narrowing it by evenly spaced selection then halves every head
    # rather than merging heads, for seeded learngenes and weight selection alike.
    teacher_heads = getattr(teacher.blocks[0].attn, "num_heads", None) if vit_ancestor else None
    teacher_heads = teacher_heads or max(1, parse_width(cfg.width, 1)[0] // HEAD_DIM)
    embed_dim, heads = check_family(cfg, ancestor, teacher_heads, given)
    arch = Arch(
        img_size=view.img_size,
        patch_size=teacher.patch_embed.patch_size[0] if vit_ancestor else default_patch_size(view.img_size),
        in_chans=view.in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        depth=cfg.aux_depth,
        num_classes=dataset.num_classes,
    )
    out.mkdir(parents=True, exist_ok=True)
    if any(m in LEARNGENES and m not in given for m in cfg.inits):
        (out / "learngenes").mkdir(exist_ok=True)  # learn() writes there and wants the folder to exist
    known_top1 = previous.get("ancestor", {}).get("top1")
    ancestor_top1 = known_top1 if is_share(known_top1) else evaluate(teacher, dataset.test, view)
    log(f"ancestor {ancestor}: test top-1 {ancestor_top1:.4f}")
    bench = Bench(cfg, arch, tuning, dataset.test, view, teacher, vit_ancestor, log)
    genes, learn_rows = bench.learngenes(ancestor, out, learngenes, previous, resume)
    flops = bench.flops()
    anc = {"name": ancestor, "top1": ancestor_top1, "vit": vit_ancestor, **ancestor_cost(ancestor)}
    rows = {row_key(r): r for r in previous.get("rows", [])}

    def report():
        return {
            "schema": SCHEMA,
            "data": data,
            "ancestor": anc,
            "arch": arch.model_dump(),
            "val_images": len(tuning.test),
            "train_images": len(tuning.train),
            "flops": flops,
            "learngenes": learn_rows,
            "rows": list(rows.values()),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }

    def record(row):
        rows[row_key(row)] = row
        write_json(results_path, report())  # after every row: an interrupted bench resumes from here
        if "skipped" in row:
            log(f"d{row['depth']} w{row['width']} {row['init']}: skipped ({row['skipped']})")
        else:
            how = f" lr {row['lr']:g}" if "lr" in row else ""
            log(
                f"d{row['depth']} w{row['width']} {row['init']} @{row['epochs']}ep{how}: val {row['val_top1']:.4f} "
                f"test {row['top1']:.4f} ({row['wall_seconds']:.0f} s)"
            )

    for depth, width in cfg.sizes():
        for init in [i for i in cfg.inits if i in LEARNGENES]:
            if (depth, width, init, cfg.epochs) not in rows:
                record(bench.row(init, depth, width, cfg.epochs, genes, rows))
    for depth, width in cfg.sizes():
        for init in [i for i in CURVE_ORDER if i in cfg.inits]:
            bench.curve(init, depth, width, genes, rows, record, flops)
    return write_report(cfg, report(), out)
