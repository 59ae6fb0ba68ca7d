"""A bench's rows as its verdict: the route costs and recommendation (`cost.py`), results.json,
results.md and the two plots."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from lgtool.base.atomic import atomic_file, write_json
from lgtool.base.lazy import lazy
from lgtool.bench.cost import ALTERNATIVES, INITS, LEARNGENES, family_cost, learn_flops, recommend, row_flops, size_name

matplotlib, plt = lazy("matplotlib"), lazy("matplotlib.pyplot")  # only when a plot is drawn


def write_report(cfg, report: dict, out: Path) -> dict:
    """Add the verdict to `report` (from `run_bench`), write every file, and return it."""
    rows = sorted(report["rows"], key=_row_order)
    flops, learned = report["flops"], report["learngenes"]
    best = family_cost(rows, learned, flops, cfg.epochs)
    scratch = family_cost(rows, learned, flops, cfg.epochs, alternatives=("scratch",))
    ranked = [m for m in best if best[m]["ratio_flops"] is not None]
    report = {
        **report,
        "config": asdict(cfg),
        "rows": rows,
        "cost": best,
        "cost_vs_scratch": scratch,
        "best_learngene": max(ranked, key=lambda m: best[m]["ratio_flops"]) if ranked else None,
        "recommendation": recommend(rows, learned, flops, cfg.epochs),
    }
    write_json(out / "results.json", report)
    with atomic_file(out / "results.md") as tmp:
        tmp.write_text(markdown(report))
    plot_accuracy(report, out / "accuracy_vs_depth.png")
    plot_time_to_accuracy(report, out / "time_to_accuracy.png")
    return report


def _row_order(r):
    return r["width"], r["depth"], INITS.index(r["init"]), r["epochs"]


def _n(x, unit="") -> str:
    """1.2G, 340M, 12k: FLOPs and images at a glance."""
    if x is None:
        return "?"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}{unit}"
    return f"{x:g}{unit}"


def _ratio(c: dict, key: str) -> str:
    return "—" if c[key] is None else f"{'' if c['exact'] else '≥ '}{c[key]}×"


def headline(report: dict) -> str:
    """One sentence: the best learngene's route against the best alternative, in FLOPs and images. Where some
    size was never matched the alternative's cost is a lower bound, and the sentence says so."""
    m = report["best_learngene"]
    if m is None:
        return "No learngene route could be compared with an alternative (no sizes in common, or no learn cost)."
    c, s = report["cost"][m], report["cost_vs_scratch"][m]
    bound = "" if c["exact"] else "at least " if c["ratio_flops"] >= 1 else "at most "
    verdict = (
        f"{bound}{c['ratio_flops']}× cheaper than"
        if c["ratio_flops"] >= 1
        else f"{bound}{round(1 / c['ratio_flops'], 2)}× more expensive than"
    )
    return (
        f"The {m.upper()} learngene route ({_n(c['route_flops'])}FLOP, {_n(c['route_images'])} images) is {verdict} "
        f"the best alternative ({_n(c['alternative_flops'])}FLOP, {_n(c['alternative_images'])} images; "
        f"{_ratio(c, 'ratio_images')} in images). Against scratch alone (the papers' comparison): "
        f"{_ratio(s, 'ratio_flops')} in FLOPs."
    )


def markdown(report: dict) -> str:
    """results.md: the top-1 table, the alternatives' curves, the routes, the recommendation, the footer."""
    cfg = report["config"]
    inits = [i for i in INITS if i in cfg["inits"]]
    by_key = {(r["depth"], r["width"], r["init"], r["epochs"]): r for r in report["rows"]}
    sizes = list(dict.fromkeys((r["depth"], r["width"]) for r in report["rows"]))
    lines = [
        *_top1_table(report, inits, by_key, sizes),
        *_curves(inits, by_key, sizes),
        *_routes(report),
        *_recommendation(report),
        *_footer(report),
    ]
    return "\n".join(lines) + "\n"


def _top1_table(report: dict, inits: list, by_key: dict, sizes: list) -> list[str]:
    """The ancestor, the headline, and test top-1 per size and init (at 0 epochs in brackets)."""
    cfg, anc = report["config"], report["ancestor"]
    first = max(1, cfg["epochs"])
    lines = [
        f"Ancestor `{anc['name']}`: test top-1 {anc['top1']:.4f}; its training ({_n(anc.get('training_images'))} "
        f"images) is {anc['paid']}.",
        "",
        "**" + headline(report) + "**",
        "",
        f"Test top-1 after {cfg['epochs']} fine-tune epoch(s) for the learngenes and {first} for the alternatives; "
        "in brackets, at 0 epochs (WAVE at a new size: after calibrating its scalers). Every choice was made on "
        f"{report['val_images']} validation images held out of the {report['train_images'] + report['val_images']} "
        "training images; the test split only gives these numbers.",
        "",
        "| depth | width | " + " | ".join(inits) + " |",
        "|---" * (2 + len(inits)) + "|",
    ]
    for depth, width in sizes:
        cells = []
        for i in inits:
            r = by_key.get((depth, width, i, cfg["epochs"] if i in LEARNGENES else first))
            cells.append(
                "" if r is None else "skipped" if "skipped" in r else f"**{r['top1']:.4f}** ({r['top1_at_init']:.3f})"
            )
        lines.append(f"| {depth} | {width} | " + " | ".join(cells) + " |")
    return lines


def _curves(inits: list, by_key: dict, sizes: list) -> list[str]:
    """Each alternative's runs at each size, by epochs: validation / test top-1."""
    lines = ["", "The alternatives trained until they match (epochs: validation / test top-1):", ""]
    for depth, width in sizes:
        for i in [i for i in inits if i in ALTERNATIVES]:
            runs = sorted(
                (e, r) for (d, w, x, e), r in by_key.items() if (d, w, x) == (depth, width, i) and "top1" in r
            )
            if runs:
                points = ", ".join(f"{e}: {r['val_top1']:.4f} / {r['top1']:.4f}" for e, r in runs)
                lines.append(f"- {size_name(depth, width)} {i}: {points}")
    return lines


def _routes(report: dict) -> list[str]:
    """Each learngene's route to the family against the best alternative and against scratch."""
    lines = [
        "",
        "Routes to the family (a student step is 3 forwards, a teacher forward its own FLOPs; learning counted "
        "once). The best alternative takes, per size, the cheapest alternative run that matches the learngene on "
        "validation; '(>)': none matched, so the ratio is a lower bound. A learngene size marked @0 is used as "
        "expanded, with no fine-tune, where that saves more FLOPs against the best alternative (judged on "
        "validation). Ratio = alternative ÷ learngene (above 1: the learngene is cheaper).",
        "",
        "| learngene | learn | sizes | route (images) | best alternative (images) | chosen per size | ratio FLOPs "
        "| ratio images | vs scratch only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, c in report["cost"].items():
        s = report["cost_vs_scratch"][m]
        budgets = c.get("epochs_per_size", {})
        chosen = ", ".join(
            f"{k}{' (' + m + '@0)' if budgets.get(k) == 0 and report['config']['epochs'] else ''}: {v}"
            for k, v in c["alternative_per_size"].items()
        )
        lines.append(
            f"| {m} | {_n(c['learn_flops'])} | {_n(c['sizes_flops'])} | {_n(c['route_flops'])} "
            f"({_n(c['route_images'])}) | {_n(c['alternative_flops'])} ({_n(c['alternative_images'])}) | {chosen} "
            f"| **{_ratio(c, 'ratio_flops')}** | {_ratio(c, 'ratio_images')} | {_ratio(s, 'ratio_flops')} |"
        )
    return lines


def _recommendation(report: dict) -> list[str]:
    """Per size, the cheapest route that reaches the best learngene's validation top-1."""
    lines = [
        "",
        "Recommendation per size: the cheapest route that reaches the best learngene's validation top-1 there "
        "(a learngene's learning shared equally by the sizes it makes):",
        "",
        "| size | route | FLOPs | validation top-1 (target) | test top-1 |",
        "|---|---|---|---|---|",
    ]
    for size, rec in report["recommendation"].items():
        target = "—" if rec["target_val_top1"] is None else f"{rec['target_val_top1']:.4f}"
        lines.append(
            f"| {size} | **{rec['route']}** | {_n(rec['flops'])} | {rec['val_top1']:.4f} ({target}) "
            f"| {rec['top1']:.4f} |"
        )
    return lines


def _footer(report: dict) -> list[str]:
    """The choices made on validation, forward FLOPs per image, the learngenes and the skipped rows."""
    lines = ["", "Choices made on validation (rate, warmup epochs, weight selection's layers and head):", ""]
    for r in report["rows"]:
        if "lr" in r:
            extra = f", layers {r['layer_policy']} {r['layers']}, head {r['head']}" if "layer_policy" in r else ""
            lines.append(
                f"- {size_name(r['depth'], r['width'])} {r['init']}@{r['epochs']}: lr {r['lr']:g}, warmup "
                f"{r['warmup_epochs']:g}{extra}"
            )
    flops = report["flops"]
    lines += ["", "Forward FLOPs per image: " + ", ".join(f"{k} {_n(v)}" for k, v in flops.items())]
    for m, g in report["learngenes"].items():
        why = f" ({g['init_why']})" if g.get("init_why") else ""
        aux = g.get("aux_val_top1")
        lines.append(
            f"- **{m}** (init {g.get('init') or '?'}{why}; Aux-Net validation top-1 "
            f"{'?' if aux is None else f'{aux:.4f}'}): {g['params']:,} parameters, learned on "
            f"{_n(g.get('images'))} images"
        )
    lines += [
        f"- skipped: {size_name(r['depth'], r['width'])} {r['init']}: {r['skipped']}"
        for r in report["rows"]
        if "skipped" in r
    ]
    return lines


def _color(init: str) -> str:
    """One colour per init in every plot."""
    return f"C{INITS.index(init)}"


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
    rows = [r for r in report["rows"] if r["width"] == width and "top1" in r]

    def draw(fig, ax):
        for init in [i for i in INITS if i in cfg["inits"]]:
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
    """Test top-1 against training FLOPs, one curve per route, at a few depths. A learngene's curve starts at
    its whole one-off learning cost (shared in truth by every size), so it is drawn at its most expensive; the
    best alternative (the cheapest that matches the best learngene) is ringed."""
    width, flops = _family_width(report), report["flops"]
    depths = sorted({r["depth"] for r in report["rows"] if r["width"] == width})
    shown = list(dict.fromkeys([depths[0], depths[len(depths) // 2], depths[-1]]))
    best = report["cost"].get(report["best_learngene"] or "", {}).get("alternative_per_size", {})

    def draw(fig, axes):
        axes = axes if hasattr(axes, "__len__") else [axes]
        for ax, depth in zip(axes, shown, strict=False):
            here = [r for r in report["rows"] if (r["depth"], r["width"]) == (depth, width) and "top1" in r]
            for init in ALTERNATIVES:
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
        order = [i for i in (*INITS, "best alternative") if i in labelled]
        axes[-1].legend([labelled[i] for i in order], order, fontsize=6, loc="lower right")
        fig.suptitle("time to accuracy (learngene curves include the whole one-off learn cost)", fontsize=9)

    figure(path, draw, ncols=len(shown), figsize=(4 * len(shown), 3.6), sharey=True)
