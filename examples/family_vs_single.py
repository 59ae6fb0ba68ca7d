"""Family-aware against single-size learning, at the same learn FLOPs, judged on validation only.

For each method, a learngene is distilled on the default bench's tuning data (its 5,000 Fashion-MNIST images
less the 10% validation split, width 64, Aux depth 8, from the shipped `fmnist-vit`, `learn`'s defaults):
- single-size: the Aux-Net alone for the bench's 3 epochs, as the papers do;
- family-aware: the sizes of the family below (those the rule makes), sandwich-sampled (3 sizes a step, and
  2: the largest and the smallest), for as many steps as cost the same FLOPs (student steps at every sampled
  size, teacher forwards actually run).
Each is then expanded at every family size and scored on the validation split, with no fine-tuning.

    python examples/family_vs_single.py docs/family-aware        # writes results.json and results.md there
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lgtool.base.arch import Arch
from lgtool.bench.cost import STEP, forward_flops, learn_flops, size_name
from lgtool.bench.plan import BenchConfig
from lgtool.family import family_targets, makeable
from lgtool.learngene import init_learngene, load_learngene
from lgtool.materialize import expand
from lgtool.training.ancestor import ancestor_view, load_ancestor
from lgtool.training.data import load_data
from lgtool.training.learn import learn
from lgtool.training.loop import evaluate
from lgtool.training.settings import LearnConfig, TrainConfig

FAMILY = [(d, 64) for d in (2, 4, 6, 8, 10, 12)] + [(6, 32), (6, 128)]  # the full run's sizes
METHODS = {"sws": {"stages": [2, 2, 2, 2]}, "tleg": {}, "wave": {"template_size": 32}}
KINDS = {"single": None, "family": 3, "family-2": 2}  # sizes trained per step (sandwich samples)


def family_of(method: str, options: dict) -> list:
    probe = init_learngene(method, width=64, num_heads=2, aux_depth=8, img_size=28, patch_size=7, in_chans=1,
                           num_classes=10, **options)  # fmt: skip
    return family_targets(probe, makeable(probe, FAMILY))


def main(out: Path) -> None:
    bench = BenchConfig()
    data = load_data("fashion-mnist", train_samples=bench.train_samples, seed=bench.seeds[0])
    tuning = data.held_out(bench.val_fraction, bench.seeds[0] + 1)
    teacher = load_ancestor("fmnist-vit", num_classes=10)
    view = ancestor_view(teacher, data.view)
    (out / "learngenes").mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    steps_per_epoch = len(tuning.train) // bench.batch_size
    for method, options in METHODS.items():
        targets = family_of(method, options)
        flops = {"teacher": forward_flops(teacher, view)}
        flops.update({size_name(a.depth, a.embed_dim): _arch_flops(a, view) for a in targets})
        sizes = [(a.depth, a.embed_dim) for a in targets]
        for kind, samples in KINDS.items():
            key = f"{method}-{kind}"
            path = out / "learngenes" / f"{key}.safetensors"
            if key in results and path.is_file():
                continue
            cfg = TrainConfig.for_command("learn", epochs=bench.learn_epochs, batch_size=bench.batch_size)
            family = None
            if samples:
                single = results[f"{method}-single"]
                per_step = _family_step_flops(targets, flops, bench.batch_size, samples)
                steps = int(single["learn_flops"] // per_step)
                cfg = TrainConfig.for_command(
                    "learn", epochs=-(-steps // steps_per_epoch), max_steps=steps, batch_size=bench.batch_size
                )
                family = sizes
            settings = LearnConfig(ancestor="fmnist-vit", method=method, output=path, width=64, num_heads=2,
                                   aux_depth=8, family=family, family_samples=samples or 3, force=True,
                                   **options)  # fmt: skip
            r = learn(settings, cfg, dataset=tuning, evaluate_on=tuning.val, evaluate_ancestor=False)
            info = {"images": r["images_seen"], "teacher_images": r["teacher_images"], "aux_size": "d8-w64",
                    "student_images": r["family_images"]}  # fmt: skip
            gene = load_learngene(path)
            val = {
                size_name(a.depth, a.embed_dim): round(evaluate(expand(gene, a), tuning.val, view), 4) for a in targets
            }
            results[key] = {"steps": r["steps"], "learn_flops": learn_flops(info, flops), "val_top1": val,
                            "mean_val_top1": round(sum(val.values()) / len(val), 4), **info}  # fmt: skip
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            print(key, json.dumps(results[key]), flush=True)
    (out / "results.md").write_text(markdown(results))


def _arch_flops(arch: Arch, view) -> int:
    from lgtool.base.arch import build_vit

    return forward_flops(build_vit(arch), view)


def _family_step_flops(targets: list, flops: dict, batch: int, samples: int) -> float:
    """Expected FLOPs of one family step: the largest and smallest sizes, the mean of the others for the
    rest of the samples, and one teacher forward (an upper bound: its cache may serve it)."""
    cost = [flops[size_name(a.depth, a.embed_dim)] for a in targets]
    if len(cost) <= samples:
        student = sum(cost)
    else:
        middle = cost[1:-1]
        student = cost[0] + cost[-1] + (samples - 2) * sum(middle) / len(middle)
    return batch * (STEP * student + flops["teacher"])


def markdown(results: dict) -> str:
    lines = ["# Family-aware vs single-size learngenes: validation top-1 as expanded, same learn FLOPs", ""]
    for method in METHODS:
        single, family = results.get(f"{method}-single"), results.get(f"{method}-family")
        if not (single and family):
            continue
        sizes = list(single["val_top1"])
        lines += [f"## {method.upper()}", "", "| learngene | learn TFLOP | steps | " + " | ".join(sizes) + " | mean |",
                  "|---|---|---|" + "---|" * (len(sizes) + 1)]  # fmt: skip
        labels = {"single": "single-size (Aux-Net only)", "family": "family-aware, 3 sizes a step",
                  "family-2": "family-aware, 2 sizes a step (largest, smallest)"}  # fmt: skip
        rows = [(labels[k], results[f"{method}-{k}"]) for k in KINDS if f"{method}-{k}" in results]
        for kind, r in rows:
            cells = " | ".join(f"{r['val_top1'][s]:.3f}" for s in sizes)
            lines.append(
                f"| {kind} | {r['learn_flops'] / 1e12:.2f} | {r['steps']} | {cells} | {r['mean_val_top1']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/family-aware"))
