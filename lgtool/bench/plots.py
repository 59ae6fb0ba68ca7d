"""The bench's two plots: test top-1 against depth, and against training FLOPs (time to accuracy), from the rows
averaged over the seeds; and `figure`, the one way every bench plot is drawn and written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lgtool.base.atomic import atomic_file
from lgtool.base.lazy import lazy
from lgtool.baselines import BASELINES
from lgtool.bench.cost import LEARNGENES, init_names, learn_flops, row_flops, size_name

matplotlib, plt = lazy("matplotlib"), lazy("matplotlib.pyplot")  # only when a plot is drawn


def _color(init: str) -> str:
    """One colour per init in every plot."""
    return f"C{init_names().index(init)}"


def figure(path: Path, draw, **subplots) -> None:
    """A matplotlib figure drawn by `draw(fig, axes)`, written as a PNG atomically."""
    matplotlib.use("Agg")
    fig, axes = plt.subplots(dpi=120, **subplots)
    draw(fig, axes)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _family_width(report: dict) -> int:
    return report["arch"]["embed_dim"]


def plot_accuracy(report: dict, path: Path) -> None:
    """Test top-1 against depth at the family width: each learngene at its budget and at 0 epochs, each
    alternative at its first budget and at the longest one it needed."""
    cfg, width = report["config"], _family_width(report)
    rows = [r for r in report["mean_rows"] if r["width"] == width and "top1" in r]

    def draw(fig, ax):
        for init in [i for i in init_names() if i in cfg["inits"]]:
            mine = [r for r in rows if r["init"] == init]
            if not mine:
                continue
            if init in LEARNGENES:
                pts = sorted((r["depth"], r["top1"], r["top1_at_init"]) for r in mine if r["epochs"] == cfg["epochs"])
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    "-o",
                    ms=3,
                    color=_color(init),
                    label=f"{init} @{cfg['epochs']}ep",
                )
                if cfg["epochs"]:
                    ax.plot(
                        [p[0] for p in pts],
                        [p[2] for p in pts],
                        ":",
                        color=_color(init),
                        alpha=0.6,
                        label=f"{init} @0ep",
                    )
                continue
            first = min(r["epochs"] for r in mine)
            pts = sorted((r["depth"], r["top1"]) for r in mine if r["epochs"] == first)
            ax.plot(*zip(*pts, strict=True), "-s", ms=3, color=_color(init), alpha=0.6, label=f"{init} @{first}ep")
            last = {}
            for r in mine:
                if r["epochs"] > last.get(r["depth"], (0, 0))[0]:
                    last[r["depth"]] = (r["epochs"], r["top1"])
            longest = sorted((d, t) for d, (e, t) in last.items() if e > first)
            if longest:
                ax.plot(
                    *zip(*longest, strict=True), "--", marker="^", ms=3, color=_color(init), label=f"{init} longest"
                )
        ax.axhline(report["ancestor"]["top1"], color="gray", lw=0.8, ls=":", label="ancestor")
        ax.set_xlabel("depth")
        ax.set_ylabel("test top-1")
        ax.set_title(f"{Path(str(report['data'])).name}, width {width}: accuracy vs depth")
        ax.legend(fontsize=5, ncol=2)

    figure(path, draw, figsize=(6.4, 4.4))


def plot_time_to_accuracy(report: dict, path: Path) -> None:
    """Mean test top-1 over the seeds against training FLOPs, one curve per route, at a few depths. A learngene's
    curve starts at its size's equal share of the learning (shared by every size it makes) plus its calibration;
    the best alternative (the cheapest that matches the best learngene) is ringed."""
    width, flops = _family_width(report), report["flops"]
    depths = sorted({r["depth"] for r in report["mean_rows"] if r["width"] == width})
    made = Counter(r["init"] for r in report["mean_rows"] if r["init"] in LEARNGENES and "top1" in r
                   and r["epochs"] == report["config"]["epochs"])  # fmt: skip
    shown = list(dict.fromkeys([depths[0], depths[len(depths) // 2], depths[-1]]))
    best = report["cost"].get(report["best_learngene"] or "", {}).get("alternative_per_size", {})

    def draw(fig, axes):
        axes = axes if hasattr(axes, "__len__") else [axes]
        for ax, depth in zip(axes, shown, strict=False):
            here = [r for r in report["mean_rows"] if (r["depth"], r["width"]) == (depth, width) and "top1" in r]
            for init in BASELINES:
                pts = sorted((row_flops(r, flops), r["top1"], r["epochs"]) for r in here if r["init"] == init)
                if pts:
                    ax.plot(
                        [p[0] for p in pts], [p[1] for p in pts], "--", marker="s", ms=3, color=_color(init), label=init
                    )
                chosen = best.get(size_name(depth, width), "").split(" ")[0]
                for x, y, e in pts:
                    if chosen == f"{init}@{e}":
                        ax.plot([x], [y], "o", ms=10, mfc="none", color="black", label="best alternative")
            for r in here:
                learned = learn_flops(report["learngenes"].get(r["init"], {}), flops)
                if r["init"] not in LEARNGENES or learned is None:
                    continue
                learned /= made[r["init"]]  # this size's share
                start = learned + row_flops({**r, "train_images": 0}, flops)  # learning + calibration
                end = learned + row_flops(r, flops)
                xs, ys = ([start, end], [r["top1_at_init"], r["top1"]]) if end > start else ([start], [r["top1"]])
                ax.plot(xs, ys, "-o", ms=3, color=_color(r["init"]), label=r["init"])
            ax.axhline(report["ancestor"]["top1"], color="gray", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overprint on a short axis
            ax.set_title(f"depth {depth}, width {width}", fontsize=9)
            ax.set_xlabel("training FLOPs (student steps + teacher forwards)")
        axes[0].set_ylabel("test top-1")
        labelled = {}  # one legend for all panels: a route missing at one depth is still named
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
        order = [i for i in (*init_names(), "best alternative") if i in labelled]
        axes[-1].legend([labelled[i] for i in order], order, fontsize=6, loc="lower right")
        fig.suptitle("time to accuracy, mean over seeds (a learngene's learning shared by its sizes)", fontsize=9)

    figure(path, draw, ncols=len(shown), figsize=(4 * len(shown), 3.6), sharey=True)
