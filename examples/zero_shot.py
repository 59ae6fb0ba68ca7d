"""A family good at every size before any training: which learn recipe makes SWS's Desc-Nets, as expanded, as good
as two epochs of weight selection (issue 28).

Every number here is made on the full `fmnist-vit` bench's data (`docs/bench-full/fmnist-vit`: 20,000 training
images per seed less a 10% validation split, the 10,000 test images), at its sizes (depths 2-12 at width 64, widths
32 and 128 at depth 6), for its seeds; weight selection's rows are that bench's own (`--bench`). Candidates:

- `single`: the bench's learngene (the Aux-Net alone, 3 epochs of distillation), as expanded;
- `single+order`: the same learngene with its channels, MLP neurons and head dimensions reordered by importance
  (`lgtool.order`) so that a narrower Desc-Net keeps the most important ones;
- `long+order`: the Aux-Net alone, distilled for as many steps as up to 3x the single learngene's learn FLOPs buy
  (9 epochs: the teacher's cache makes later epochs cheap, so it spends 2.2x), then ordered (`learn`'s default);
- `family`: family-aware distillation (3 sizes a step: the largest, the smallest and one other) at up to 3x the
  single learngene's learn FLOPs;
- `...+calib`: each size's norms and biases relearned on 2,000 training images for 200 steps, every matrix frozen
  (`calibrate_descnet`; its rate chosen on validation), charged to the route.

Every choice reads the validation split; test top-1 is reported only. Resumable: finished units (one file each
under OUT/units/) are skipped, and several processes may work on one OUT with different --candidates or --seeds.

    python examples/zero_shot.py bench/zero-shot --bench bench/full-vit     # results.json and results.md there
    python examples/zero_shot.py bench/zero-shot --bench bench/full-vit --report   # the report of what is done
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from lgtool.base.atomic import write_text
from lgtool.bench.cost import STEP, learn_flops, size_name
from lgtool.bench.plan import BenchPlan
from lgtool.bench.rows import Bench
from lgtool.bench.run import load
from lgtool.bench.settings import BenchConfig, BenchIO
from lgtool.bench.verdict import seeded_cost
from lgtool.family import family_targets, makeable
from lgtool.learngene import load_learngene
from lgtool.materialize import expand
from lgtool.order import order_learngene
from lgtool.training.calibrate import calibrate_descnet
from lgtool.training.data import Data, balanced_subset
from lgtool.training.learn import learn
from lgtool.training.loop import evaluate
from lgtool.training.settings import LearnConfig, TrainConfig

METHOD = "sws"
SIZES = [(d, 64) for d in (2, 4, 6, 8, 10, 12)] + [(6, 32), (6, 128)]
LEARN_BUDGET = 3.0  # the family's learn FLOPs, at most this many times the single learngene's
FAMILY_SAMPLES = 3
CALIBRATION = {"steps": 200, "samples": 2000, "batch_size": 64, "lr_grid": [1e-2, 3e-2]}
GOAL_MARGIN = 0.005  # as expanded, within half a point of weight selection after 2 epochs (means over seeds)
WS = "weight-selection"
CANDIDATES = ["single", "single+order", "long+order", "family"]


def bench_config(seeds: list[int]) -> BenchConfig:
    """The full fmnist-vit bench's settings (its data and sizes), for `seeds`."""
    return BenchConfig(
        depths=[2, 4, 6, 8, 10, 12], widths=[32, 128], width_depths=[6], train_samples=20_000, test_samples=10_000,
        max_epochs=8, seeds=seeds,
    )  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--bench", type=Path, required=True, help="the full fmnist-vit bench (its rows and learngenes)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--report", action="store_true", help="report every candidate measured so far")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    study = Study(args.out, args.bench, bench_config(seeds))
    names = args.candidates.split(",")
    for name in [] if args.report else names:  # every seed of one candidate before the next
        for seed in seeds:
            study.candidate(name, seed)
    study.report(seeds, CANDIDATES if args.report else [n for n in CANDIDATES if n in names])


class Study:
    def __init__(self, out: Path, bench: Path, cfg: BenchConfig):
        self.out, self.cfg = out, cfg
        self.bench = json.loads((bench / "results.json").read_text())
        self.bench_genes = bench / "learngenes"
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "results.json"
        (out / "units").mkdir(exist_ok=True)  # one file per (candidate, seed): several processes may share `out`
        self.results = {"units": {}}
        plan = BenchPlan(cfg, BenchIO(output=out), "fmnist-vit", out, {}, {})
        self.loaded = load(plan)
        self.started = time.perf_counter()

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.0f}s] {msg}", flush=True)

    def seed_bench(self, seed: int) -> Bench:
        ld = self.loaded
        return Bench(self.cfg, seed, ld.arch, ld.data[seed], ld.view, ld.teacher, ld.vit_ancestor, self.log)

    def unit(self, key: str) -> dict | None:
        path = self.out / "units" / f"{key.replace('/', '-')}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_unit(self, key: str, unit: dict) -> None:
        write_text(self.out / "units" / f"{key.replace('/', '-')}.json", json.dumps(unit, indent=1) + "\n")

    def candidate(self, name: str, seed: int) -> None:
        """Learn (or reuse) the candidate's learngene for `seed`, then measure every size as expanded and, for
        `+calib` (always measured with it), after calibration."""
        key = f"{name}/s{seed}"
        if self.unit(key) is not None:
            return
        bench = self.seed_bench(seed)
        flops = bench.flops()
        gene, learned = self.learngene(name, seed, bench, flops)
        targets = family_targets(gene, makeable(gene, SIZES))
        sizes = {}
        same = self.unit(f"single/s{seed}") if name == "single+order" else None
        for target in targets:
            size = size_name(target.depth, target.embed_dim)
            if (target.depth, target.embed_dim) not in SIZES:
                continue
            if same and target.embed_dim == gene.arch.embed_dim:  # the ordering leaves the full width's function
                sizes[size] = same["sizes"][size]
                continue
            sizes[size] = self.measure(gene, target, bench)
            self.log(f"{key} {size}: {sizes[size]}")
        learned["learn_flops"] = learn_flops(learned, flops)
        self.save_unit(key, {"learned": learned, "sizes": sizes, "flops": flops})

    def learngene(self, name: str, seed: int, bench: Bench, flops: dict):
        folder = self.out / "learngenes" / f"s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.safetensors"
        single = self.single(seed, bench, folder)
        if name == "single":
            return load_learngene(single[0]), single[1]
        if name == "single+order":
            ordered, info = order_learngene(load_learngene(single[0]), bench.data, bench.view, seed=seed)
            ordered.save(path)
            return ordered, {**single[1], "ordering_images": info["images"]}
        if name in ("family", "long+order"):
            done = path.with_suffix(".json")  # what its learning cost, once it is written
            if not (done.is_file() and path.is_file()):
                write_text(done, json.dumps(self.learn_more(name, seed, bench, path, single[1], flops)))
            return load_learngene(path), json.loads(done.read_text())
        raise SystemExit(f"unknown candidate {name}")

    def single(self, seed: int, bench: Bench, folder: Path):
        """The bench's own single-size learngene for this seed (copied), with what its learning cost."""
        path = folder / "single.safetensors"
        if not path.is_file():
            shutil.copyfile(self.bench_genes / f"s{seed}" / f"{METHOD}.safetensors", path)
        info = dict(self.bench["learned"][str(seed)][METHOD])
        info["path"] = str(path)
        return path, info

    def learn_more(self, name: str, seed: int, bench: Bench, path: Path, single: dict, flops: dict) -> dict:
        """`family`: family-aware over every size SWS makes here; `long+order`: the Aux-Net alone, longer, then
        ordered (learn's default). Each for as many steps as LEARN_BUDGET times the single learngene's FLOPs buy,
        the teacher's forwards estimated at the single one's cache hit rate (the measured cost is reported)."""
        probe = load_learngene(path.parent / "single.safetensors")  # the same rule and Aux size
        sizes = [(a.depth, a.embed_dim) for a in family_targets(probe, makeable(probe, SIZES))]
        if name == "family":
            names = sorted((size_name(*s) for s in sizes), key=lambda n: flops[n])
            middle = statistics.fmean(flops[n] for n in names[1:-1])
            per_image = STEP * (flops[names[0]] + flops[names[-1]] + (FAMILY_SAMPLES - 2) * middle)
        else:
            sizes, per_image = None, STEP * flops[single["aux_size"]]
        teacher_share = single["teacher_images"] / single["images"]  # the cache's hit rate, as the single one had it
        per_image += teacher_share * flops["teacher"]
        budget = LEARN_BUDGET * learn_flops(single, flops)
        steps = int(budget // (per_image * self.cfg.batch_size))
        steps_per_epoch = len(bench.data.train) // self.cfg.batch_size
        self.log(f"learn {name} (seed {seed}): {steps} steps ({steps / steps_per_epoch:.1f} epochs), {sizes}")
        options = {"stages": self.cfg.rule_options["stages"]}
        t0 = time.perf_counter()
        a, checkpoint = bench.arch, path.with_suffix(".ckpt")
        r = learn(
            LearnConfig(
                ancestor="fmnist-vit",
                method=METHOD,
                output=path,
                width=a.embed_dim,
                num_heads=a.num_heads,
                aux_depth=self.cfg.aux_depth,
                patch_size=a.patch_size,
                init="ancestor",
                family=sizes,
                family_samples=FAMILY_SAMPLES,
                resume=checkpoint if checkpoint.is_file() else None,
                force=True,
                **options,
            ),  # fmt: skip
            TrainConfig.for_command(
                "learn",
                epochs=-(-steps // steps_per_epoch),
                max_steps=steps,
                batch_size=self.cfg.batch_size,
                lr=self.cfg.learn_lr,
                seed=seed,
            ),  # fmt: skip
            dataset=bench.data,
            evaluate_on=bench.data.val,
            evaluate_ancestor=False,
        )
        seconds = round(time.perf_counter() - t0, 1)
        return {"aux_val_top1": r["aux_top1"], "images": r["images_trained"], "teacher_images": r["teacher_images"],
                "student_images": r["family_images"], "ordering_images": r["ordering_images"], "steps": r["steps"],
                "aux_size": single["aux_size"], "seconds": seconds, "path": str(path)}  # fmt: skip

    def measure(self, gene, target, bench: Bench) -> dict:
        """Top-1 as expanded, and after calibrating norms and biases at the rate validation picks."""
        data, view = bench.data, bench.view
        model = expand(gene, target)
        out = {"val": evaluate(model, data.val, view), "test": evaluate(model, data.test, view)}
        few = data.train.subset(balanced_subset(data.train.labels, CALIBRATION["samples"], bench.seed))
        calib = Data(data.name, few, data.test, data.view, val=data.val)
        tried = []
        for lr in CALIBRATION["lr_grid"]:
            m = expand(gene, target)
            r = calibrate_descnet(m, calib, view, steps=CALIBRATION["steps"], batch_size=CALIBRATION["batch_size"],
                                  lr=lr, seed=bench.seed, evaluate_on=data.val)  # fmt: skip
            tried.append((r["top1"], lr, m, r["images"]))
        val, lr, m, images = max(tried, key=lambda t: t[0])
        out["calib"] = {"lr": lr, "val": val, "test": evaluate(m, data.test, view), "images": images,
                        "tried": {str(t[1]): t[0] for t in tried}}  # fmt: skip
        return out

    def report(self, seeds: list[int], names: list[str]) -> None:
        ws = [r for r in self.bench["rows"] if r["init"] == WS and r["seed"] in seeds and "val_top1" in r]
        flops = self.unit(f"single/s{seeds[0]}")["flops"]
        margin = self.bench["margin"]["value"]
        summary = {}
        for name in names:
            for calibrated in (False, True):
                label = name + ("+calib" if calibrated else "")
                units = {s: self.unit(f"{name}/s{s}") for s in seeds}
                if not all(units.values()):
                    continue
                summary[label] = self.summarize(units, calibrated, ws, flops, margin, seeds)
        self.results["summary"] = summary
        self.results["config"] = {"sizes": SIZES, "seeds": seeds, "method": METHOD, "learn_budget": LEARN_BUDGET,
                                  "family_samples": FAMILY_SAMPLES, "calibration": CALIBRATION,
                                  "goal_margin": GOAL_MARGIN, "tie_margin": margin}  # fmt: skip
        self.results["ws_2ep_test"] = ws_after(ws, 2, seeds)
        self.results["units"] = {f"{n}/s{s}": self.unit(f"{n}/s{s}") for n in names for s in seeds}
        write_text(self.path, json.dumps(self.results, indent=1) + "\n")
        write_text(self.out / "results.md", markdown(self.results, seeds))

    def summarize(self, units: dict, calibrated: bool, ws: list, flops: dict, margin: float, seeds: list) -> dict:
        sizes = list(next(iter(units.values()))["sizes"])
        rows_by_seed, learned = {}, {}
        per_size = {}
        for s, unit in units.items():
            learned[str(s)] = {METHOD: dict(unit["learned"])}
            rows = {}
            for size, m in unit["sizes"].items():
                depth, width = (int(x) for x in size[1:].split("-w"))
                got = m["calib"] if calibrated else m
                rows[(depth, width, METHOD, 0)] = {
                    "depth": depth, "width": width, "init": METHOD, "epochs": 0, "seed": s, "val_top1": got["val"],
                    "top1": got["test"], "train_images": 0, "teacher_images": 0,
                    "calibration_images": got.get("images", 0),
                }  # fmt: skip
            for r in ws:
                if r["seed"] == s:
                    rows[(r["depth"], r["width"], r["init"], r["epochs"])] = r
            rows_by_seed[s] = rows
        after_two = ws_after(ws, 2, seeds)
        for size in sizes:
            got = [(units[s]["sizes"][size]["calib"] if calibrated else units[s]["sizes"][size]) for s in seeds]
            test = [g["test"] for g in got]
            ws2 = after_two.get(size)
            mean = statistics.fmean(test)
            per_size[size] = {
                "test": round(mean, 4), "test_range": [round(min(test), 4), round(max(test), 4)],
                "val": round(statistics.fmean(g["val"] for g in got), 4),
                "ws_2ep_test": None if ws2 is None else round(ws2, 4),
                "gap": None if ws2 is None else round(mean - ws2, 4),
                "goal": None if ws2 is None else mean >= ws2 - GOAL_MARGIN,
                "calibration_images": got[0].get("images", 0),
            }  # fmt: skip
        cost = seeded_cost(rows_by_seed, learned, seeds, flops, 0, margin, alternatives=(WS,))[METHOD]
        learn = [learn_flops(learned[str(s)][METHOD], flops) for s in seeds]
        return {
            "learn_flops": round(statistics.fmean(learn)),
            "sizes": per_size,
            "break_even_sizes": cost["break_even_sizes"],
            "marginal_flops": cost["marginal_flops"],
            "ratio_flops": cost["ratio_flops"],
            "ratio_flops_interval": cost["ratio_flops_interval"],
            "verdict": cost["verdict"],
            "exact": cost["exact"],  # False: weight selection never matched some size within its budgets run
            "alternative_per_size": cost["alternative_per_size"],
        }


def ws_after(ws: list, epochs: int, seeds: list) -> dict:
    """Size -> weight selection's mean test top-1 after `epochs` epochs, where every seed ran it."""
    out = {}
    for depth, width in SIZES:
        got = [r["top1"] for r in ws if (r["depth"], r["width"], r["epochs"]) == (depth, width, epochs)]
        if len(got) == len(seeds):
            out[size_name(depth, width)] = round(statistics.fmean(got), 4)
    return out


def markdown(results: dict, seeds: list) -> str:
    summary, ws = results["summary"], results["ws_2ep_test"]
    if not summary:
        return "# Zero-shot family study\n\nNo candidate has every seed yet.\n"
    sizes = [size_name(d, w) for d, w in SIZES]
    base = summary.get("single", {}).get("learn_flops") or 1
    lines = [
        "# A family good at every size before any training (SWS, the full fmnist-vit bench's data)",
        "",
        f"Test top-1 as expanded (no fine-tuning), mean of seeds {', '.join(map(str, seeds))}; min-max and "
        "validation top-1 in results.json. `ws@2`: weight selection after 2 epochs, the full bench's own rows (same "
        "seeds, splits and test images). **Bold**: within 0.5 points of ws@2 (the goal). `-`: SWS cannot make "
        "that size (a depth below its 4 stages, a width above its own). Learn TFLOP counts every student step, "
        "teacher forward and ordering pass; `+calib` sizes also pay 12,800 calibration images each.",
        "",
        "| candidate | learn TFLOP | " + " | ".join(sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for label, s in summary.items():
        cells = []
        for size in sizes:
            p = s["sizes"].get(size)
            cells.append("-" if p is None else (f"**{p['test']:.3f}**" if p["goal"] else f"{p['test']:.3f}"))
        lines.append(
            f"| {label} | {s['learn_flops'] / 1e12:.2f} ({s['learn_flops'] / base:.1f}x) | {' | '.join(cells)} |"
        )
    lines.append("| ws@2 | | " + " | ".join("-" if ws.get(z) is None else f"{ws[z]:.3f}" for z in sizes) + " |")
    lines += ["", "## Against the goal, and the break-even family size", ""]
    lines += ["| candidate | sizes within 0.5 points of ws@2 | largest miss (points) | break-even sizes | "
              "weight selection to match it ÷ its route (FLOPs) |", "|---|---|---|---|---|"]  # fmt: skip
    for label, s in summary.items():
        made = {z: p for z, p in s["sizes"].items() if p["gap"] is not None}
        met = sum(1 for p in made.values() if p["goal"])
        worst = min(made, key=lambda z: made[z]["gap"])
        miss = "none" if made[worst]["goal"] else f"{-100 * made[worst]['gap']:.1f} at {worst}"
        bound = "" if s["exact"] else "at least "  # weight selection never matched it somewhere: a lower bound
        ratio = (
            "-"
            if s["ratio_flops"] is None
            else f"{bound}{s['ratio_flops']}x {s['ratio_flops_interval']}, {s['verdict']}"
        )
        lines.append(f"| {label} | {met} of {len(made)} | {miss} | {s['break_even_sizes'] or 'never'} | {ratio} |")
    lines += [
        "",
        "Break-even: how many sizes like these a family needs before the learning (and each size's calibration) "
        "costs less than weight selection trained until it matches the candidate as expanded at each size "
        "(its budgets 1, 2, 4, 8 epochs, matched on validation within the full bench's tie margin, "
        f'{results["config"]["tie_margin"]}); the ratio\'s interval is a bootstrap over the seeds. "at least": '
        "at some size weight selection never matched the candidate within the budgets the full bench ran (up to 4 or "
        "8 epochs), so its cost there, and the ratio, are lower bounds, and the verdict cannot be `dearer`.",
        "",
        "Made by:",
        "",
        "```bash",
        "lgtool bench -o bench/full-vit --seeds 0,1,2 --test-samples 10000 --no-family --depths 2,4,6,8,10,12 "
        "--widths 32,96,128 --width-depths 6 --train-samples 20000 --max-epochs 8",
        "python examples/zero_shot.py bench/zero-shot --bench bench/full-vit",
        "```",
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
