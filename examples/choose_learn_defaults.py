"""Choose `learn`'s own defaults (rate, warmup, init) on a validation split, never on the test split.

Each candidate distils a learngene on the bench's tuning data (the default bench's 5,000 Fashion-MNIST
images less its 10% validation split, width 64, Aux depth 8, 3 epochs, from the shipped `fmnist-vit`) and is
scored by the mean validation top-1 of its Desc-Nets as expanded (no fine-tuning) at the bench's depths 2, 6,
12 (those it makes: SWS with 4 stages cannot make depth 2).
The grid: rate x warmup with the templates seeded from the ancestor, then the papers' initialization at each
method's best rate and warmup. Results land in OUT/results.json as they come (re-running skips finished ones).

    python examples/choose_learn_defaults.py docs/learn-defaults
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lgtool.base.errors import InputError
from lgtool.bench.plan import BenchConfig
from lgtool.family import target_arch
from lgtool.learngene import load_learngene
from lgtool.materialize import expand
from lgtool.rules import RULES
from lgtool.training.data import View, load_data
from lgtool.training.learn import learn
from lgtool.training.loop import evaluate
from lgtool.training.settings import LearnConfig, TrainConfig

METHODS = ("sws", "tleg")
RATES = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3)
WARMUPS = (0.2, 1.0)
DEPTHS = (2, 6, 12)


def score(out: Path, tuning, method: str, lr: float, warmup: float, init: str, bench: BenchConfig) -> dict:
    name = f"{method}-{init}-lr{lr:g}-w{warmup:g}"
    path = out / "learngenes" / f"{name}.safetensors"
    if not path.is_file():
        options = {k: v for k, v in bench.rule_options.items() if k in RULES[method].OPTIONS}
        cfg = TrainConfig(epochs=bench.learn_epochs, batch_size=bench.batch_size, lr=lr, warmup_epochs=warmup)
        settings = LearnConfig(ancestor="fmnist-vit", method=method, output=path, width=64, num_heads=2,
                               aux_depth=bench.aux_depth, init=init, force=True, **options)  # fmt: skip
        learn(settings, cfg, dataset=tuning, evaluate_on=tuning.val, evaluate_ancestor=False)
    gene = load_learngene(path)
    view = View(gene.arch.img_size, gene.arch.in_chans, gene.meta.input)
    val = {d: round(evaluate(expand(gene, depth=d), tuning.val, view), 4) for d in DEPTHS if makes(gene, d)}
    return {"method": method, "init": init, "lr": lr, "warmup_epochs": warmup, "val_top1": val,
            "mean": round(sum(val.values()) / len(val), 4)}  # fmt: skip


def makes(gene, depth: int) -> bool:
    """Whether the learngene makes this depth (SWS with 4 stages cannot make depth 2: the bench skips it too)."""
    try:
        target_arch(gene, depth=depth)
        return True
    except InputError:
        return False


def main(out: Path) -> None:
    bench = BenchConfig()
    data = load_data("fashion-mnist", train_samples=bench.train_samples, seed=bench.seeds[0])
    tuning = data.held_out(bench.val_fraction, bench.seeds[0] + 1)
    (out / "learngenes").mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["method"], r["init"], r["lr"], r["warmup_epochs"]) for r in results}

    def run(method, lr, warmup, init):
        if (method, init, lr, warmup) not in done:
            results.append(score(out, tuning, method, lr, warmup, init, bench))
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps(results[-1]), flush=True)
        return next(
            r for r in results if (r["method"], r["init"], r["lr"], r["warmup_epochs"]) == (method, init, lr, warmup)
        )

    for method in METHODS:
        seeded = [run(method, lr, w, "ancestor") for lr in RATES for w in WARMUPS]
        best = max(seeded, key=lambda r: r["mean"])
        run(method, best["lr"], best["warmup_epochs"], "official")
    (out / "results.md").write_text(markdown(results))


def markdown(results: list) -> str:
    """The grid as a table, and the choice: the rate and warmup with the best mean over the methods."""
    seeded = [r for r in results if r["init"] == "ancestor"]
    pairs = sorted({(r["lr"], r["warmup_epochs"]) for r in seeded})
    score = {p: {r["method"]: r["mean"] for r in seeded if (r["lr"], r["warmup_epochs"]) == p} for p in pairs}
    lr, warmup = max((p for p in pairs if len(score[p]) == len(METHODS)), key=lambda p: sum(score[p].values()))
    lines = [
        "# `learn`'s defaults, chosen on validation",
        "",
        "Mean validation top-1 of the Desc-Nets as expanded (depths 2, 6, 12 where the rule makes them), after a",
        "3-epoch learn on the default bench's tuning split, templates seeded from `fmnist-vit`:",
        "",
        "| lr | warmup epochs | " + " | ".join(m.upper() for m in METHODS) + " | mean |",
        "|---|---|" + "---|" * (len(METHODS) + 1),
    ]
    for p in pairs:
        cells = [f"{score[p][m]:.3f}" if m in score[p] else "–" for m in METHODS]
        mean = sum(score[p].values()) / len(score[p])
        lines.append(f"| {p[0]:g} | {p[1]:g} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += ["", f"Chosen: **lr {lr:g}, warmup {warmup:g} epochs** (the best mean over the methods).", ""]
    lines += ["Seeded from the ancestor against the papers' initialization, at the same rate and warmup:", ""]
    for r in (r for r in results if r["init"] == "official"):
        ours = next(
            s
            for s in seeded
            if (s["method"], s["lr"], s["warmup_epochs"]) == (r["method"], r["lr"], r["warmup_epochs"])
        )
        lines.append(
            f"- {r['method'].upper()} (lr {r['lr']:g}, warmup {r['warmup_epochs']:g}): seeded {ours['mean']:.3f}, "
            f"official {r['mean']:.3f} ({100 * (ours['mean'] - r['mean']):+.1f} points)"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/learn-defaults"))
