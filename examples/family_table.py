"""Top-1 on the test split at 0 and 1 fine-tune epochs, at every size of the family: single-size against
family-aware learngenes (the same learn FLOPs) and weight selection, every rate chosen on validation.

The learngenes are those of `examples/family_vs_single.py` (run it first into the same folder: it writes
learngenes/ and results.json there). Each kind is then benched with `lgtool bench` itself, given those
learngenes: depths 2-12 at width 64 and widths 32 and 128 at depth 6, on the default bench's data, each size
fine-tuned 1 epoch at the rate the validation split picks from the bench's grid; the bench records each
model's top-1 before training too (for WAVE at a size it was not trained at: after calibrating its scalers).
Weight selection runs beside the single-size learngenes only (it does not depend on them).

    python examples/family_vs_single.py docs/family-aware
    python examples/family_table.py docs/family-aware      # writes bench-<kind>/ and table.md there
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lgtool.bench.cost import size_name
from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench

METHODS = ("sws", "tleg", "wave")
KINDS = {"single": "single-size (Aux-Net only)", "family": "family-aware, 3 sizes a step",
         "family-2": "family-aware, 2 sizes a step"}  # fmt: skip
SIZES = dict(depths=[2, 4, 6, 8, 10, 12], widths=[32, 128], width_depths=[6])  # the full run's family


def main(out: Path) -> None:
    learned = json.loads((out / "results.json").read_text())
    for kind in KINDS:
        bench_out = out / f"bench-{kind}"
        if (bench_out / "results.md").is_file():
            continue
        genes = [out / "learngenes" / f"{m}-{kind}.safetensors" for m in METHODS]
        missing = [str(p) for p in genes if not p.is_file()]
        if missing:
            sys.exit(f"{missing[0]} is missing: run examples/family_vs_single.py {out} first")
        inits = [*METHODS, "weight-selection"] if kind == "single" else list(METHODS)
        cfg = BenchConfig(**SIZES, inits=inits, epochs=1, max_epochs=1)
        io = BenchIO(learngenes=genes, output=bench_out, resume=bench_out.is_dir())
        run_bench(plan_bench(cfg, io), log=print)
    (out / "table.md").write_text(markdown(out, learned))


def markdown(out: Path, learned: dict) -> str:
    benches = {kind: json.loads((out / f"bench-{kind}" / "results.json").read_text()) for kind in KINDS}
    cfg = BenchConfig(**SIZES)
    sizes = [size_name(d, w) for d, w in cfg.sizes()]
    lines = [
        "# Single-size against family-aware learngenes and weight selection, at every size",
        "",
        "Test top-1 after 1 fine-tune epoch; in brackets, before any (as expanded; WAVE at a size it was not",
        "trained at: after calibrating its scalers on 2,000 images). The learngenes of one method cost the same",
        "learn FLOPs (`family_vs_single.py`); every rate and weight selection's layers were chosen on the",
        "validation split. '—': the rule cannot make that size; the means are over the sizes it makes.",
        "Made by `examples/family_vs_single.py` and `examples/family_table.py` on the default bench's data",
        "(4,500 training and 500 validation images).",
        "",
    ]
    for method in METHODS:
        lines += [f"## {method.upper()}", "", "| init | learn TFLOP | " + " | ".join(sizes) + " | mean @0 | mean @1 |",
                  "|---|---|" + "---|" * (len(sizes) + 2)]  # fmt: skip
        made = set(_rows(benches["single"], method))  # the means are over the sizes this rule makes
        for kind, label in KINDS.items():
            tflop = learned[f"{method}-{kind}"]["learn_flops"] / 1e12
            lines.append(_line(label, f"{tflop:.2f}", _rows(benches[kind], method), sizes, made))
        selection = _rows(benches["single"], "weight-selection")
        lines.append(_line("weight selection (no teacher)", "0", selection, sizes, made))
        lines.append("")
    return "\n".join(lines) + "\n"


def _rows(report: dict, init: str) -> dict:
    return {size_name(r["depth"], r["width"]): r for r in report["rows"] if r["init"] == init and "top1" in r}


def _line(label: str, tflop: str, rows: dict, sizes: list, over: set) -> str:
    cells = [f"{rows[s]['top1']:.3f} ({rows[s]['top1_at_init']:.3f})" if s in rows else "—" for s in sizes]
    made = [rows[s] for s in sizes if s in over and s in rows]
    mean0 = sum(r["top1_at_init"] for r in made) / max(1, len(made))
    mean1 = sum(r["top1"] for r in made) / max(1, len(made))
    return f"| {label} | {tflop} | " + " | ".join(cells) + f" | {mean0:.3f} | {mean1:.3f} |"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/family-aware"))
