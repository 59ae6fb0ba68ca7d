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
from dataclasses import dataclass
from pathlib import Path

from lgtool.base.arch import HEAD_DIM, Arch, default_patch_size, parse_width
from lgtool.base.atomic import write_json
from lgtool.base.errors import InputError
from lgtool.bench.cost import ALTERNATIVES, LEARNGENES, learn_flops
from lgtool.bench.handover import FAMILY, Keeper, learn_shares, read_kept, write_family
from lgtool.bench.plan import (
    CURVE_ORDER,
    SCHEMA,
    BenchConfig,
    BenchIO,
    BenchPlan,
    ancestor_cost,
    check_family,
    plan_bench,
    row_key,
)
from lgtool.bench.report import write_report
from lgtool.bench.rows import Bench
from lgtool.family import makeable
from lgtool.learngene import load_learngene
from lgtool.training.ancestor import ancestor_view, is_vit, load_ancestor
from lgtool.training.data import load_data
from lgtool.training.loop import evaluate

__all__ = ["BenchConfig", "BenchIO", "BenchPlan", "plan_bench", "run_bench"]


@dataclass
class Loaded:
    """What a planned bench loads before it writes anything: each step can still refuse the bench."""

    given: dict  # method -> (path, Learngene) of the learngenes passed in
    data: object  # Data: train less the validation split, val (every choice), test (reported numbers only)
    teacher: object  # the ancestor
    vit_ancestor: bool
    view: object
    arch: Arch  # the family's architecture, at the Aux depth


def run_bench(plan: BenchPlan, log=print) -> dict:
    """Run a bench `plan_bench` checked: load the learngenes given, the data and the ancestor (a fault in any of
    them still refuses the bench before its folder exists), then make the folder and its learngenes, train every
    row (the learngenes' at their budget, then each alternative's curve), and write the report."""
    started = time.perf_counter()
    log = stamped(log, started)
    cfg = plan.cfg
    bench, genes, results = begin(plan, load(plan), log, started)
    rows, flops = results.rows, results.head["flops"]
    makes = {m: makeable(gene, cfg.sizes()) for m, gene in genes.items()}
    shares = learn_shares(results.head["learngenes"], makes, lambda info: learn_flops(info, flops))
    made_from = sources(plan.ancestor, results.head["learngenes"])
    keeper = None if plan.io.no_family else Keeper(plan.out / FAMILY, flops, shares, bench.view.norm, made_from)
    bench.keep = keeper and keeper.offer
    for depth, width in cfg.sizes():
        for init in [i for i in cfg.inits if i in LEARNGENES]:
            if (depth, width, init, cfg.epochs) not in rows:
                results.record(bench.row(init, depth, width, cfg.epochs, genes, rows))
    for depth, width in cfg.sizes():
        for init in [i for i in CURVE_ORDER if i in cfg.inits]:
            bench.curve(init, depth, width, genes, rows, results.record, flops)
    report = write_report(cfg, results.report(), plan.out)
    kept = keeper.kept if keeper else read_kept(plan.out / FAMILY)  # --no-family: what an earlier run kept
    write_family(plan.out / FAMILY, report, plan.io, plan.given, shares, kept)
    return report


def sources(ancestor: str, learn_rows: dict) -> dict:
    """Where each route's models come from, for the family's lineage: the ancestor, or a learngene file."""
    return {
        **{init: f"ancestor {ancestor}" for init in ALTERNATIVES},
        **{m: f"learngene {info['path']}" for m, info in learn_rows.items()},
    }


def load(plan: BenchPlan) -> Loaded:
    cfg = plan.cfg
    loaded = [(Path(p), load_learngene(p)) for p in plan.io.learngenes]  # tensors and finiteness, before data
    given = {gene.method: (path, gene) for path, gene in loaded}
    dataset = load_data(plan.io.data, plan.io.data_dir, cfg.train_samples, seed=cfg.seed)
    if len(dataset.train) * (1 - cfg.val_fraction) < cfg.batch_size + dataset.num_classes:
        raise InputError(
            f"--data {plan.io.data}: {len(dataset.train)} training images, fewer than one batch of the bench "
            f"({cfg.batch_size} images) once the validation split ({cfg.val_fraction:.0%}) is held out"
        )
    # Every choice (rates, warmup, layer policy, when a curve has matched) is made on this split.
    data = dataset.held_out(cfg.val_fraction, cfg.seed + 1)
    teacher = load_ancestor(plan.ancestor, num_classes=dataset.num_classes)
    vit_ancestor = is_vit(teacher)
    view = ancestor_view(teacher, dataset.view)
    # The ancestor's head count by default: narrowing it by evenly spaced selection then halves every head
    # rather than merging heads, for seeded learngenes and weight selection alike.
    teacher_heads = getattr(teacher.blocks[0].attn, "num_heads", None) if vit_ancestor else None
    teacher_heads = teacher_heads or max(1, parse_width(cfg.width, 1)[0] // HEAD_DIM)
    embed_dim, heads = check_family(cfg, plan.ancestor, teacher_heads, plan.given)
    arch = Arch(
        img_size=view.img_size,
        patch_size=teacher.patch_embed.patch_size[0] if vit_ancestor else default_patch_size(view.img_size),
        in_chans=view.in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        depth=cfg.aux_depth,
        num_classes=dataset.num_classes,
    )
    return Loaded(given, data, teacher, vit_ancestor, view, arch)


def begin(plan: BenchPlan, loaded: Loaded, log, started: float) -> tuple[Bench, dict, Results]:
    """The bench's folder, the ancestor's test top-1, its learngenes (learned or given) and the results so far."""
    cfg, out = plan.cfg, plan.out
    out.mkdir(parents=True, exist_ok=True)
    if any(m in LEARNGENES and m not in plan.given for m in cfg.inits):
        (out / "learngenes").mkdir(exist_ok=True)  # learn() writes there and wants the folder to exist
    teacher, view, test = loaded.teacher, loaded.view, loaded.data.test
    known_top1 = plan.previous.get("ancestor", {}).get("top1")
    ancestor_top1 = known_top1 if is_share(known_top1) else evaluate(teacher, test, view)
    log(f"ancestor {plan.ancestor}: test top-1 {ancestor_top1:.4f}")
    bench = Bench(cfg, loaded.arch, loaded.data, view, teacher, loaded.vit_ancestor, log)
    genes, learn_rows = bench.learngenes(plan.ancestor, out, loaded.given, plan.previous, plan.io.resume)
    ancestor = {"name": plan.ancestor, "top1": ancestor_top1, "vit": loaded.vit_ancestor}
    head = {
        "schema": SCHEMA,
        "data": plan.io.data,
        "ancestor": {**ancestor, **ancestor_cost(plan.ancestor)},
        "arch": loaded.arch.model_dump(),
        "val_images": len(loaded.data.val),
        "train_images": len(loaded.data.train),
        "flops": bench.flops(),
        "learngenes": learn_rows,
    }
    rows = {row_key(r): r for r in plan.previous.get("rows", [])}
    return bench, genes, Results(plan.results_path, head, rows, log, started)


class Results:
    """The bench's results.json: what every row shares, then the rows, rewritten after every row so that an
    interrupted bench resumes from there."""

    def __init__(self, path, head: dict, rows: dict, log, started: float):
        self.path, self.head, self.rows, self.log, self.started = path, head, rows, log, started

    def report(self) -> dict:
        wall = round(time.perf_counter() - self.started, 1)
        return {**self.head, "rows": list(self.rows.values()), "wall_seconds": wall}

    def record(self, row: dict) -> None:
        self.rows[row_key(row)] = row
        write_json(self.path, self.report())
        if "skipped" in row:
            self.log(f"d{row['depth']} w{row['width']} {row['init']}: skipped ({row['skipped']})")
        else:
            how = f" lr {row['lr']:g}" if "lr" in row else ""
            self.log(
                f"d{row['depth']} w{row['width']} {row['init']} @{row['epochs']}ep{how}: val {row['val_top1']:.4f} "
                f"test {row['top1']:.4f} ({row['wall_seconds']:.0f} s)"
            )


def stamped(log, started: float):
    """`log` with the seconds since `started` before every line."""

    def say(msg):
        log(f"[{time.perf_counter() - started:5.0f}s] {msg}")

    return say


def is_share(x) -> bool:
    return isinstance(x, float) and 0 <= x <= 1
