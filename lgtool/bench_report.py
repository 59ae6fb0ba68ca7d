"""What a bench's rows add up to: the cost of each route to a family, the tables, the two plots.

A route's cost is the number of images that go through the student's forward and backward pass:
- a learngene route: learning the gene once + calibrating every size (WAVE) + fine-tuning every size;
- the scratch route: for every size, the shortest scratch run on the curve that matches the learngene's
  top-1 there. Where no run matches, the longest run is counted and the size is reported as ">N", so the
  ratio is then a lower bound.
Teacher forward passes are counted beside, and the ancestor's own training is reported as already paid.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lgtool.arch import parse_width
from lgtool.rules import RULES

LEARNGENES = tuple(RULES)
INITS = (*LEARNGENES, "scratch", "kd-scratch", "weight-selection", "weight-selection+kd")


def size_name(depth: int, width: int) -> str:
    return f"d{depth}-w{width}"


def size_arch(arch, depth: int, width: int):
    """The family's architecture at another depth and width: the head dim stays, as WAVE keeps it."""
    return arch.model_copy(update={"depth": depth, "embed_dim": width, "num_heads": max(1, width // arch.head_dim)})


def ancestor_cost(ancestor: str) -> dict:
    """The ancestor's training images as its folder records them (lgtool finetune writes them); paid once."""
    from lgtool.ancestor import shipped_ancestor

    config = Path(shipped_ancestor(ancestor) or ancestor) / "config.json"
    try:
        tune = json.loads(config.read_text())["lgtool"]["finetune"]
        images = tune["epochs"] * tune["train_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"training_images": None, "paid": "unknown: not trained by lgtool finetune"}
    return {"training_images": images, "paid": "already paid: a pretrained model, trained once for every use"}


def training_cost(rows, learn_rows: dict, epochs: int) -> dict:
    """Per learngene: its route's images, the scratch route's, the scratch epochs that match each size, the ratio."""
    curves = {}
    for r in rows:
        if r["init"] == "scratch" and "top1" in r:
            curves.setdefault((r["depth"], r["width"]), []).append((r["epochs"], r["top1"], r["train_images"]))
    out = {}
    for method, info in learn_rows.items():
        match, calibration, finetune, scratch_images = {}, 0, 0, 0
        for r in rows:
            curve = sorted(curves.get((r["depth"], r["width"]), []))
            if r["init"] != method or r["epochs"] != epochs or "top1" not in r or not curve:
                continue  # a size without a scratch curve is in neither route
            calibration += r.get("calibration_images", 0)
            finetune += r["train_images"]
            hit = next(((e, images) for e, top1, images in curve if top1 >= r["top1"]), None)
            match[size_name(r["depth"], r["width"])] = hit[0] if hit else f">{curve[-1][0]}"
            scratch_images += hit[1] if hit else curve[-1][2]
        route = (info.get("images") or 0) + calibration + finetune
        known = bool(match) and info.get("images") is not None
        out[method] = {
            "learn_images": info.get("images"),
            "calibration_images": calibration,
            "finetune_images": finetune,
            "route_images": route if known else None,
            "teacher_images": info.get("teacher_images"),
            "scratch_images": scratch_images if known else None,
            "scratch_epochs_to_match": match,
            "ratio": round(scratch_images / route, 2) if known else None,
            "exact": all(isinstance(v, int) for v in match.values()),  # False: the ratio is a lower bound
        }
    return out


def summarize(cfg, arch, rows, learn_rows, ancestor: dict, data: str, started: float) -> dict:
    from dataclasses import asdict

    from lgtool.bench import SCHEMA

    done = sorted(rows, key=_row_order)
    family = sum(size_arch(arch, depth, width).num_params() for depth, width in cfg.sizes())
    cost = training_cost(done, learn_rows, cfg.epochs)
    ranked = [m for m in cost if cost[m]["ratio"] is not None]
    return {
        "schema": SCHEMA,
        "data": data,
        "ancestor": ancestor,
        "config": asdict(cfg),
        "learngenes": learn_rows,
        "storage_ratio": {m: round(family / r["params"], 2) for m, r in learn_rows.items() if r.get("params")},
        "family_params": family,
        "training_cost": cost,
        "best_learngene": max(ranked, key=lambda m: cost[m]["ratio"]) if ranked else None,
        "teacher_images": {
            "learn": sum(r.get("teacher_images") or 0 for r in learn_rows.values()),
            "baselines": sum(r.get("teacher_images", 0) for r in done),
        },
        "rows": done,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _row_order(r):
    return r["width"], r["depth"], INITS.index(r["init"]), r["epochs"]


def _images(n) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def markdown(report: dict) -> str:
    cfg, anc = report["config"], report["ancestor"]
    inits = [i for i in INITS if i in cfg["inits"]]
    by_key = {(r["depth"], r["width"], r["init"], r["epochs"]): r for r in report["rows"]}
    sizes = list(dict.fromkeys((r["depth"], r["width"]) for r in report["rows"]))
    paid = f"its training ({_images(anc.get('training_images'))} images) is {anc['paid']}"
    lines = [
        f"Ancestor `{anc['name']}`: held-out top-1 {anc['top1']:.4f}; {paid}.",
        "",
        f"Held-out top-1 after {cfg['epochs']} fine-tune epoch(s); in brackets, before fine-tuning "
        "(WAVE at a new size: after calibrating its scalers). Last column: scratch trained longer.",
        "",
        "| depth | width | params | " + " | ".join(inits) + " | scratch longer (epochs: top-1) |",
        "|---" * (4 + len(inits)) + "|",
    ]
    for depth, width in sizes:
        cells, params = [], ""
        for i in inits:
            r = by_key.get((depth, width, i, cfg["epochs"]))
            if r is None or "top1" not in r:
                cells.append("skipped" if r else "")
                continue
            params = params or f"{r['params'] / 1e6:.2f}M"
            cells.append(f"**{r['top1']:.4f}** ({r['top1_at_init']:.3f})")
        longer = sorted(
            (e, r["top1"])
            for (d, w, i, e), r in by_key.items()
            if (d, w, i) == (depth, width, "scratch") and e != cfg["epochs"] and "top1" in r
        )
        cells.append(", ".join(f"{e}: {t:.4f}" for e, t in longer) or "—")
        lines.append(f"| {depth} | {width} | {params} | " + " | ".join(cells) + " |")
    lrs = sorted({(r["init"], r["lr"], r["lr_from"]) for r in report["rows"] if "lr" in r})
    lines += ["", "Learning rates: " + "; ".join(f"{i} {lr:g} ({src})" for i, lr, src in lrs), ""]
    lines += [
        "Routes to the family (images through the student's forward and backward pass; the scratch route trains "
        "each size until it matches the learngene there; '>N': no scratch run matched, the ratio is a lower bound):",
        "",
        "| learngene | learn | calibration | fine-tunes | route | teacher forwards | scratch route "
        "| scratch epochs to match | training-cost ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, c in report["training_cost"].items():
        ratio = "—" if c["ratio"] is None else f"{'' if c['exact'] else '≥ '}{c['ratio']}×"
        match = ", ".join(f"{k}: {v}" for k, v in c["scratch_epochs_to_match"].items())
        lines.append(
            f"| {m} | {_images(c['learn_images'])} | {_images(c['calibration_images'])} | "
            f"{_images(c['finetune_images'])} | {_images(c['route_images'])} | {_images(c['teacher_images'])} | "
            f"{_images(c['scratch_images'])} | {match} | **{ratio}** |"
        )
    lines.append("")
    for m, s in report["storage_ratio"].items():
        g = report["learngenes"][m]
        lines.append(
            f"- **{m}** (init {g.get('init') or '?'}, Aux-Net top-1 {g.get('aux_top1') or float('nan'):.4f}): "
            f"{g['params']:,} parameters, storage ratio {s}× (the benched family holds {report['family_params']:,})"
        )
    t = report["teacher_images"]
    lines.append(f"- teacher forward passes: {_images(t['learn'])} in learning, {_images(t['baselines'])} in kd rows")
    skipped = [r for r in report["rows"] if "skipped" in r]
    lines += [f"- skipped: depth {r['depth']} width {r['width']} {r['init']}: {r['skipped']}" for r in skipped]
    return "\n".join(lines) + "\n"


def _color(init: str) -> str:
    """One colour per init in every plot."""
    return f"C{INITS.index(init)}"


def _figure(path: Path, draw, **subplots) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgtool.atomic import atomic_file

    fig, axes = plt.subplots(dpi=120, **subplots)
    draw(fig, axes)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_accuracy(report: dict, path: Path) -> None:
    """Held-out top-1 against depth at the family width: every init at the fine-tune budget, scratch longer."""
    cfg = report["config"]
    width = parse_width(cfg["width"], 1)[0]
    rows = [r for r in report["rows"] if r["width"] == width and "top1" in r]

    def draw(fig, ax):
        series = [(i, cfg["epochs"]) for i in INITS if i in cfg["inits"]]
        series += sorted({("scratch", r["epochs"]) for r in rows if r["init"] == "scratch"} - set(series))
        for init, epochs in series:
            pts = sorted((r["depth"], r["top1"]) for r in rows if (r["init"], r["epochs"]) == (init, epochs))
            if pts:
                style = "--" if epochs != cfg["epochs"] else "-"
                alpha = 1.0 if epochs == cfg["epochs"] else 0.3 + 0.7 * cfg["epochs"] / epochs
                ax.plot(
                    *zip(*pts, strict=True),
                    style,
                    marker="o",
                    ms=3,
                    color=_color(init),
                    alpha=alpha,
                    label=f"{init} @{epochs}ep",
                )
        ax.axhline(report["ancestor"]["top1"], color="gray", lw=0.8, ls=":", label="ancestor")
        ax.set_xlabel("depth")
        ax.set_ylabel("held-out top-1")
        ax.set_title(f"{Path(str(report['data'])).name}, width {width}: accuracy vs depth")
        ax.legend(fontsize=6, ncol=2)

    _figure(path, draw, figsize=(6.4, 4.2))


def plot_time_to_accuracy(report: dict, path: Path) -> None:
    """Held-out top-1 against cumulative training images, one curve per route, at a few depths.

    A learngene's curve starts at its whole one-off learning cost (plus calibration), shared by every size in
    truth, so it is drawn here at its most expensive."""
    cfg = report["config"]
    width = parse_width(cfg["width"], 1)[0]
    depths = sorted(cfg["depths"])
    shown = list(dict.fromkeys([depths[0], depths[len(depths) // 2], depths[-1]]))
    learned = report["learngenes"]

    def draw(fig, axes):
        axes = axes if hasattr(axes, "__len__") else [axes]
        for ax, depth in zip(axes, shown, strict=False):
            here = [r for r in report["rows"] if (r["depth"], r["width"]) == (depth, width) and "top1" in r]
            scratch = sorted((r["train_images"], r["top1"]) for r in here if r["init"] == "scratch")
            if scratch:
                ax.plot(*zip(*scratch, strict=True), "--", color=_color("scratch"), marker="o", ms=3, label="scratch")
            for r in here:
                if r["init"] in LEARNGENES and learned.get(r["init"], {}).get("images"):
                    start = learned[r["init"]]["images"] + r.get("calibration_images", 0)
                    ax.plot(
                        [start, start + r["train_images"]],
                        [r["top1_at_init"], r["top1"]],
                        marker="o",
                        ms=3,
                        color=_color(r["init"]),
                        label=r["init"],
                    )
                elif r["init"] not in ("scratch",) and r["epochs"] == cfg["epochs"]:
                    ax.plot(
                        [r["train_images"]],
                        [r["top1"]],
                        marker="s",
                        ms=4,
                        ls="",
                        color=_color(r["init"]),
                        label=r["init"],
                    )
            ax.axhline(report["ancestor"]["top1"], color="gray", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_title(f"depth {depth}, width {width}", fontsize=9)
            ax.set_xlabel("training images (student forward+backward)")
        axes[0].set_ylabel("held-out top-1")
        labelled = {}  # one legend for all panels: a route missing at one depth is still named
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
        order = [i for i in INITS if i in labelled]
        axes[-1].legend([labelled[i] for i in order], order, fontsize=6, loc="lower right")
        fig.suptitle("time to accuracy (learngene curves include the whole one-off learn cost)", fontsize=9)

    _figure(path, draw, ncols=len(shown), figsize=(4 * len(shown), 3.6), sharey=True)
