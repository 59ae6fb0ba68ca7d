"""`lgtool bench`: is a learngene the cheapest way to a family of sizes, against the best alternative?

For every size (depths at the family width, and more widths where asked):
- sws, tleg, wave: expanded from a learngene distilled once from the ancestor (WAVE first calibrates the
  scalers of every size other than its Aux size, templates frozen), then fine-tuned for `epochs` (0: as
  expanded);
- the alternatives a practitioner holding the ancestor would try (the baselines, `lgtool.baselines`): scratch and
  kd-scratch (timm's init, the second distilled from the ancestor with the loss `learn` uses), weight-selection(+kd)
  (cut from the ancestor's own weights, head kept when the labels match). Each doubles its epochs until it matches
  the best learngene there or gains less than `min_gain`, up to `max_epochs`.
Every init picks its learning rate, warmup (and weight selection its layer policy) on a validation split
carved from the training data; the test split only produces the reported numbers. Every row, learngenes
included, is repeated per seed (`cfg.seeds`: subset, validation split, init, data order); an alternative's curve
is decided on its mean over the seeds, within the tie margin measured once the learngene rows are in. What the
routes cost, in FLOPs and images, is `cost.py`'s business; the verdict over the seeds is `verdict.py`'s. The
family is handed over from the first seed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lgtool.base.arch import HEAD_DIM, Arch, check_training_memory, default_patch_size, parse_width, training_bytes
from lgtool.base.atomic import write_json
from lgtool.base.errors import InputError
from lgtool.baselines import BASELINES, race_order
from lgtool.bench.cost import LEARNGENES, learn_flops
from lgtool.bench.handover import FAMILY, Keeper, learn_shares, measure_kept, read_kept, write_family
from lgtool.bench.plan import (
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
from lgtool.bench.rows import Bench, race
from lgtool.bench.verdict import by_seed, measured_margin
from lgtool.family import makeable
from lgtool.learngene import load_learngene
from lgtool.training.ancestor import ancestor_view, is_vit, load_ancestor
from lgtool.training.data import Data, balanced_subset, load_data
from lgtool.training.loop import evaluate

__all__ = ["BenchConfig", "BenchIO", "BenchPlan", "plan_bench", "run_bench"]


@dataclass
class Loaded:
    """What a planned bench loads before it writes anything: each step can still refuse the bench."""

    given: dict  # method -> (path, Learngene) of the learngenes passed in
    data: dict  # seed -> Data: train less the validation split, val (every choice), test (reported numbers only)
    teacher: object  # the ancestor
    vit_ancestor: bool
    view: object
    arch: Arch  # the family's architecture, at the Aux depth
    full_test: object  # the whole test split: the family handed over is measured on it


def run_bench(plan: BenchPlan, log=print) -> dict:
    """Run a bench `plan_bench` checked: load the learngenes given, the data and the ancestor (a fault in any of
    them still refuses the bench before its folder exists), then make the folder and every seed's learngenes,
    train every row (the learngenes' at their budget on every seed, then each alternative's curve), and write the
    report and the family."""
    started = time.perf_counter()
    log = stamped(log, started)
    cfg = plan.cfg
    loaded = load(plan)
    benches, genes, results = begin(plan, loaded, log, started)
    rows, flops, first = results.rows, results.head["flops"], cfg.seeds[0]
    learned = results.head["learned"][str(first)]
    makes = {m: makeable(gene, cfg.sizes()) for m, gene in genes[first].items()}
    shares = learn_shares(learned, makes, lambda info: learn_flops(info, flops))
    keeper = None
    if not plan.io.no_family:
        keeper = Keeper(plan.out / FAMILY, flops, shares, benches[0].view.norm, sources(plan.ancestor, learned))
    benches[0].keep = keeper and keeper.offer  # the family: the first seed's models
    for depth, width in cfg.sizes():
        for bench in benches:
            for init in [i for i in cfg.inits if i in LEARNGENES]:
                if (depth, width, init, cfg.epochs, bench.seed) not in rows:
                    results.record(bench.row(init, depth, width, cfg.epochs, genes[bench.seed], rows))
    results.head["margin"] = margin = measured_margin(
        by_seed(rows.values()), cfg.seeds, results.head["val_images"], cfg.tie_margin
    )
    log(f"tie margin {margin['value']:.4f} ({margin['source']})")
    for depth, width in cfg.sizes():
        for init in [i for i in race_order() if i in cfg.inits]:
            race(benches, init, depth, width, genes, rows, results.record, flops, margin["value"])
    report = write_report(cfg, results.report(), plan.out)
    kept = keeper.kept if keeper else read_kept(plan.out / FAMILY)  # --no-family: what an earlier run kept
    measure_kept(plan.out / FAMILY, kept, lambda model: evaluate(model, loaded.full_test, benches[0].view),
                 len(loaded.full_test))  # fmt: skip
    handed = {**report, "rows": [r for r in report["rows"] if r["seed"] == first], "learngenes": learned}
    write_family(plan.out / FAMILY, handed, plan.io, plan.given, shares, kept)
    return report


def sources(ancestor: str, learn_rows: dict) -> dict:
    """Where each route's models come from, for the family's lineage: the ancestor, or a learngene file."""
    return {
        **{init: f"ancestor {ancestor}" for init in BASELINES},
        **{m: f"learngene {info['path']}" for m, info in learn_rows.items()},
    }


def load(plan: BenchPlan) -> Loaded:
    cfg = plan.cfg
    loaded = [(Path(p), load_learngene(p)) for p in plan.io.learngenes]  # tensors and finiteness, before data
    given = {gene.method: (path, gene) for path, gene in loaded}
    # Read once: every seed shares the test split (for an ImageFolder without one, the first seed carves it) and
    # draws its own training subset and validation split from the same images.
    dataset = load_data(plan.io.data, plan.io.data_dir, seed=cfg.seeds[0])
    full_test = dataset.test
    # Only reported, never chosen on: the same test images for every seed, so that seeds differ in training only.
    test = full_test.subset(balanced_subset(full_test.labels, cfg.test_samples, 0))
    data = {}
    for seed in cfg.seeds:
        train = dataset.train
        if cfg.train_samples is not None:  # as load_data(train_samples=..., seed=seed) draws it
            train = train.subset(balanced_subset(train.labels, cfg.train_samples, seed))
        if len(train) * (1 - cfg.val_fraction) < cfg.batch_size + dataset.num_classes:
            raise InputError(
                f"--data {plan.io.data}: {len(train)} training images, fewer than one batch of the bench "
                f"({cfg.batch_size} images) once the validation split ({cfg.val_fraction:.0%}) is held out"
            )
        # Every choice (rates, warmup, layer policy, when a curve has matched) is made on this split.
        data[seed] = Data(dataset.name, train, test, dataset.view).held_out(cfg.val_fraction, seed + 1)
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
    check_sizes_fit(arch, cfg)
    return Loaded(given, data, teacher, vit_ancestor, view, arch, full_test)


def check_sizes_fit(arch: Arch, cfg) -> None:
    """Refuses, before any training, a bench whose largest size (by what its training holds) would not fit in
    memory at the bench's batch size; the Aux-Net is checked as learn starts."""
    sizes = [arch.resized(d, w) for d, w in cfg.sizes()]
    largest = max(sizes, key=lambda a: training_bytes(a, cfg.batch_size))
    what = f"bench (its size d{largest.depth}-w{largest.embed_dim})"
    hint = f"bench smaller --depths or --widths (its batch is {cfg.batch_size} images)"
    check_training_memory(largest, what, cfg.batch_size, hint=hint)


def begin(plan: BenchPlan, loaded: Loaded, log, started: float) -> tuple[list, dict, Results]:
    """The bench's folder, the ancestor's test top-1, one `Bench` per seed with its learngenes (learned or given),
    and the results so far."""
    cfg, out = plan.cfg, plan.out
    out.mkdir(parents=True, exist_ok=True)
    first = loaded.data[cfg.seeds[0]]
    teacher, view = loaded.teacher, loaded.view
    known_top1 = plan.previous.get("ancestor", {}).get("top1")
    ancestor_top1 = known_top1 if is_share(known_top1) else evaluate(teacher, first.test, view)
    log(f"ancestor {plan.ancestor}: test top-1 {ancestor_top1:.4f}")
    benches = [Bench(cfg, s, loaded.arch, loaded.data[s], view, teacher, loaded.vit_ancestor, log) for s in cfg.seeds]
    genes, learned = {}, {}
    for bench in benches:
        genes[bench.seed], learned[str(bench.seed)] = bench.learngenes(
            plan.ancestor, out, loaded.given, plan.previous, plan.io.resume
        )
    ancestor = {"name": plan.ancestor, "top1": ancestor_top1, "vit": loaded.vit_ancestor}
    head = {
        "schema": SCHEMA,
        "config": asdict(cfg),  # from the first row on: a resumed bench must keep these settings
        "data": plan.io.data,
        "ancestor": {**ancestor, **ancestor_cost(plan.ancestor)},
        "arch": loaded.arch.model_dump(),
        "val_images": len(first.val),
        "train_images": len(first.train),
        "test_images": len(first.test),
        "flops": benches[0].flops(),
        "learned": learned,  # str(seed) -> method -> what learning it cost and scored
    }
    rows = {row_key(r): r for r in plan.previous.get("rows", [])}
    return benches, genes, Results(plan.results_path, head, rows, log, started)


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
            self.log(f"d{row['depth']} w{row['width']} {row['init']} s{row['seed']}: skipped ({row['skipped']})")
        else:
            how = f" lr {row['lr']:g}" if "lr" in row else ""
            self.log(
                f"d{row['depth']} w{row['width']} {row['init']} @{row['epochs']}ep s{row['seed']}{how}: "
                f"val {row['val_top1']:.4f} "
                f"test {row['top1']:.4f} ({row['wall_seconds']:.0f} s)"
            )


def stamped(log, started: float):
    """`log` with the seconds since `started` before every line."""

    def say(msg):
        log(f"[{time.perf_counter() - started:5.0f}s] {msg}")

    return say


def is_share(x) -> bool:
    return isinstance(x, float) and 0 <= x <= 1
