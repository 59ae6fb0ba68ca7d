"""A bench's rows as its verdict: the costs and verdict over the seeds (`verdict.py`), the recommendation
(`cost.py`), results.json, results.md, and the two plots (`plots.py`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from lgtool.base.atomic import atomic_file, write_json
from lgtool.baselines import BASELINES, references
from lgtool.bench.cost import LEARNGENES, init_names, recommend, size_name
from lgtool.bench.plots import plot_accuracy, plot_time_to_accuracy
from lgtool.bench.verdict import BUDGET_RULE, by_seed, mean_learned, mean_rows, measured_margin, seeded_cost


def write_report(cfg, report: dict, out: Path) -> dict:
    """Add the verdict over the seeds to `report` (from `run_bench`), write every file, and return it."""
    rows = sorted(report["rows"], key=_row_order)
    flops, seeds, epochs = report["flops"], cfg.seeds, cfg.epochs
    seeded = by_seed(rows)
    if "margin" not in report:  # no learngene row ran the race (a bench of alternatives only)
        report["margin"] = measured_margin(seeded, seeds, report["val_images"], cfg.tie_margin)
    margin = report["margin"]["value"]
    mean, learned = mean_rows(seeded, seeds), mean_learned(report["learned"], seeds)
    best = seeded_cost(seeded, report["learned"], seeds, flops, epochs, margin)
    at_budget = {str(b): seeded_cost(seeded, report["learned"], seeds, flops, epochs, margin, budget=b)
                 for b in sorted({0, epochs})}  # fmt: skip
    scratch = seeded_cost(seeded, report["learned"], seeds, flops, epochs, margin, alternatives=references())
    ranked = [m for m in best if best[m]["ratio_flops"] is not None]
    report = {
        **report,
        "config": asdict(cfg),
        "rows": rows,
        "mean_rows": mean,
        "learngenes": learned,
        "budget_rule": BUDGET_RULE,
        "cost": best,
        "cost_at_budget": at_budget,
        "cost_vs_scratch": scratch,
        "best_learngene": max(ranked, key=lambda m: best[m]["ratio_flops"]) if ranked else None,
        "recommendation": recommend(mean, learned, flops, epochs, margin),
    }
    write_json(out / "results.json", report)
    with atomic_file(out / "results.md") as tmp:
        tmp.write_text(markdown(report))
    plot_accuracy(report, out / "accuracy_vs_depth.png")
    plot_time_to_accuracy(report, out / "time_to_accuracy.png")
    return report


def _row_order(r):
    return r["width"], r["depth"], init_names().index(r["init"]), r["epochs"], r.get("seed", 0)


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


def _interval(c: dict) -> str:
    low_high = c.get("ratio_flops_interval")
    return "—" if low_high is None else f"{low_high[0]}–{low_high[1]}×"


VERDICT_WORDS = {"cheaper": "cheaper than", "dearer": "dearer than", "tie": "tied with"}


def headline(report: dict) -> str:
    """One sentence: the best learngene's route against the best alternative, in the verdict word its interval over
    the seeds allows, with the ratio, the interval and the margin. Where some size was never matched the ratio is a
    lower bound, and the sentence says so."""
    m = report["best_learngene"]
    if m is None:
        return "No learngene route could be compared with an alternative (no sizes in common, or no learn cost)."
    c, s = report["cost"][m], report["cost_vs_scratch"][m]
    seeds = len(report["config"]["seeds"])
    bound = "" if c["exact"] else "at least "
    route = f"The {m.upper()} learngene route ({_n(c['route_flops'])}FLOP, {_n(c['route_images'])} images)"
    other = f"the best alternative ({_n(c['alternative_flops'])}FLOP)"
    margin = f"tie margin {_points(report['margin']['value'])}"
    scratch = f"Against scratch alone (the papers' comparison): {_ratio(s, 'ratio_flops')} ({s['verdict']})."
    if seeds < 2:  # a point without its noise decides nothing
        return (
            f"{route} against {other}: {bound}{c['ratio_flops']}× in FLOPs on one seed, {margin}; with no interval "
            f"its verdict is `tie` (bench at least 2 seeds for one). {scratch}"
        )
    return (
        f"{route} is {VERDICT_WORDS[c['verdict']]} {other}: {bound}{c['ratio_flops']}× in FLOPs, {_interval(c)} over "
        f"{seeds} seeds, {margin}. {scratch}"
    )


def _points(share: float) -> str:
    return f"{100 * share:.2g} points"


def markdown(report: dict) -> str:
    """results.md: the top-1 table, the alternatives' curves, the routes and their verdicts, the budgets, the
    recommendation, the footer."""
    cfg = report["config"]
    benched = [i for i in init_names() if i in cfg["inits"]]
    by_key = {(r["depth"], r["width"], r["init"], r["epochs"]): r for r in report["mean_rows"]}
    sizes = list(dict.fromkeys((r["depth"], r["width"]) for r in report["mean_rows"]))
    lines = [
        *_top1_table(report, benched, by_key, sizes),
        *_curves(benched, by_key, sizes),
        *_routes(report),
        *_budgets(report),
        *_recommendation(report),
        *_footer(report),
    ]
    return "\n".join(lines) + "\n"


def _spread(r: dict, field: str) -> str:
    low, high = r.get(f"{field}_range") or (r[field], r[field])
    return f"±{(high - low) / 2:.4f}" if high > low else ""


def _top1_table(report: dict, benched: list, by_key: dict, sizes: list) -> list[str]:
    """The ancestor, the headline, the scale, and mean test top-1 per size and init (at 0 epochs in brackets)."""
    cfg, anc = report["config"], report["ancestor"]
    first = max(1, cfg["epochs"])
    lines = [
        f"Ancestor `{anc['name']}`: test top-1 {anc['top1']:.4f}; its training ({_n(anc.get('training_images'))} "
        f"images) is {anc['paid']}.",
        "",
        "**" + headline(report) + "**",
        "",
        *_scale(report),
        "",
        f"Test top-1 after {cfg['epochs']} fine-tune epoch(s) for the learngenes and {first} for the alternatives, "
        f"the mean over the seeds ± half their spread (min to max); in brackets, at 0 epochs (WAVE at a new size: "
        f"after calibrating its scalers). Every choice was made on {report['val_images']} validation images held out "
        f"of each seed's {report['train_images'] + report['val_images']} training images; the test split "
        f"({report.get('test_images', '?')} "
        "images, the same for every seed) only gives these numbers.",
        "",
        "| depth | width | " + " | ".join(benched) + " |",
        "|---" * (2 + len(benched)) + "|",
    ]
    for depth, width in sizes:
        cells = []
        for i in benched:
            r = by_key.get((depth, width, i, cfg["epochs"] if i in LEARNGENES else first))
            cells.append(
                ""
                if r is None
                else "skipped"
                if "skipped" in r
                else f"**{r['top1']:.4f}**{_spread(r, 'top1')} ({r['top1_at_init']:.3f})"
            )
        lines.append(f"| {depth} | {width} | " + " | ".join(cells) + " |")
    return lines


def _scale(report: dict) -> list[str]:
    """What this bench measured, and what a quicker bench gave up against a bench whose verdict can be relied on."""
    cfg, sizes = report["config"], {(r["depth"], r["width"]) for r in report["mean_rows"]}
    seeds, images = len(cfg["seeds"]), report["train_images"] + report["val_images"]
    margin = report["margin"]
    lines = [
        f"Scale: {seeds} seed{'s' if seeds > 1 else ''} ({', '.join(map(str, cfg['seeds']))}), {images:,} training "
        f"images, {len(sizes)} sizes. Tie margin: {margin['value']:.4f} validation top-1, from {margin['source']} "
        f"(the noise of a mean over the seeds: the split's standard error {margin['standard_error']:.4f}, the "
        f"seeds' spread {margin['seed_spread'] or '—'}). An alternative matches a learngene within it, and stops "
        "doubling its epochs once it does.",
    ]
    short = [f"{seeds} seed{'s' if seeds > 1 else ''}"] if seeds < 3 else []
    short += [f"{images:,} training images"] if images < 20_000 else []
    short += [f"{len(sizes)} sizes"] if len(sizes) < 6 else []
    if short:
        lines.append(
            f"This bench is a quick one ({', '.join(short)}; a verdict to rely on wants at least 3 seeds, 20,000 "
            "training images and 6 sizes): its intervals are wide or missing, and a `tie` is its likeliest honest "
            "verdict. Rerun larger before relying on it (e.g. `--seeds 0,1,2 --train-samples 20000 --depths "
            "2,4,6,8,10,12`)."
        )
    return lines


def _curves(benched: list, by_key: dict, sizes: list) -> list[str]:
    """Each alternative's runs at each size, by epochs: mean validation / test top-1."""
    lines = ["", "The alternatives trained until they match (epochs: mean validation / test top-1):", ""]
    for depth, width in sizes:
        for i in [i for i in benched if i in BASELINES]:
            runs = sorted(
                (e, r) for (d, w, x, e), r in by_key.items() if (d, w, x) == (depth, width, i) and "top1" in r
            )
            if runs:
                points = ", ".join(f"{e}: {r['val_top1']:.4f} / {r['top1']:.4f}" for e, r in runs)
                lines.append(f"- {size_name(depth, width)} {i}: {points}")
    return lines


def _routes(report: dict) -> list[str]:
    """Each learngene's route to the family against the best alternative: ratio, interval, verdict, break-even."""
    lines = [
        "",
        "Routes to the family (a student step is 3 forwards, a teacher forward its own FLOPs; learning counted "
        "once). The best alternative takes, per size, the cheapest alternative run whose mean validation top-1 is "
        "within the tie margin of the learngene's; '(>)': none was, so the ratio is a lower bound. Ratio = "
        "alternative ÷ learngene (above 1: the learngene is cheaper), on the means over the seeds; the interval is "
        "the 95% bootstrap over the seeds, and the verdict is `cheaper` or `dearer` only where it lies wholly above "
        "or below 1 (an interval of one value: every resample of the seeds made the same matches). The learngene's "
        "budget per size (@0: used as expanded) follows the rule: " + report["budget_rule"] + ".",
        "",
        "| learngene | learn | sizes | route (images) | best alternative (images) | chosen per size | ratio FLOPs "
        "| interval | verdict | vs scratch only |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, c in report["cost"].items():
        s = report["cost_vs_scratch"][m]
        budgets = c.get("epochs_per_size", {})
        chosen = ", ".join(f"{k} ({m}@{budgets.get(k)}): {v}" for k, v in c["alternative_per_size"].items())
        lines.append(
            f"| {m} | {_n(c['learn_flops'])} | {_n(c['sizes_flops'])} | {_n(c['route_flops'])} "
            f"({_n(c['route_images'])}) | {_n(c['alternative_flops'])} ({_n(c['alternative_images'])}) | {chosen} "
            f"| **{_ratio(c, 'ratio_flops')}** | {_interval(c)} | **{c['verdict']}** | {_ratio(s, 'ratio_flops')} |"
        )
    lines.append("")
    for m, c in report["cost"].items():
        marginal, even = c["marginal_flops"], c["break_even_sizes"]
        if marginal is None:
            continue
        pays = "never pays for itself (a size saves nothing on average)" if even is None else (
            f"pays for itself from {even} size{'s' if even > 1 else ''} like these"
        )  # fmt: skip
        lines.append(
            f"- **{m}**: one more size costs {_n(marginal['learngene'])}FLOP by the learngene (expand and its budget) "
            f"against {_n(marginal['alternative'])}FLOP by the alternative that matches it; its learning "
            f"({_n(c['learn_flops'])}FLOP) {pays}."
        )
        if c.get("route_flops_interval") and c.get("alternative_flops_interval"):
            (rl, rh), (al, ah) = c["route_flops_interval"], c["alternative_flops_interval"]
            seeds = "; ".join(
                f"seed {seed}: " + ", ".join(f"{size} {alt}" for size, alt in chosen.items())
                for seed, chosen in c["alternative_by_seed"].items()
            )
            lines.append(
                f"  Over the seeds its route costs {_n(rl)}–{_n(rh)}FLOP and the best alternative "
                f"{_n(al)}–{_n(ah)}FLOP; "
                f"each seed on its own would have matched it with {seeds}."
            )
    return lines


def _budgets(report: dict) -> list[str]:
    """The ratio with every size at one fixed budget, so the budget rule's choice can be checked against both."""
    at = report.get("cost_at_budget", {})
    if len(at) < 2:
        return []
    lines = [
        "",
        "The same routes with the learngene's budget fixed at every size (ratio FLOPs, interval, verdict):",
        "",
        "| learngene | " + " | ".join(f"every size @{b}" for b in at) + " |",
        "|---" * (1 + len(at)) + "|",
    ]
    for m in report["cost"]:
        cells = [f"{_ratio(c[m], 'ratio_flops')} ({_interval(c[m])}) {c[m]['verdict']}" for c in at.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _recommendation(report: dict) -> list[str]:
    """Per size, the cheapest route that reaches the best learngene's validation top-1."""
    lines = [
        "",
        "Recommendation per size: the cheapest route within the tie margin of the best learngene's mean validation "
        "top-1 there (a learngene's learning shared equally by the sizes it makes):",
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
    lines = [
        "",
        "Choices made on validation, seed by seed (rate, warmup epochs, weight selection's layers and head):",
        "",
    ]
    chosen = {}
    for r in report["rows"]:
        if "lr" in r:
            chosen.setdefault((r["depth"], r["width"], r["init"], r["epochs"]), []).append(r)
    for (depth, width, init, epochs), runs in chosen.items():
        said = [f"lr {_each(runs, 'lr')}", f"warmup {_each(runs, 'warmup_epochs')}"]
        if "layer_policy" in runs[0]:
            said += [f"layers {_each(runs, 'layer_policy')} {_each(runs, 'layers')}", f"head {_each(runs, 'head')}"]
        lines.append(f"- {size_name(depth, width)} {init}@{epochs}: {', '.join(said)}")
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
        for r in report["mean_rows"]
        if "skipped" in r
    ]
    return lines


def _each(runs: list, field: str) -> str:
    """A row's choice over the seeds: once where every seed made it, else seed by seed ("a / b")."""
    said = [f"{r[field]:g}" if isinstance(r[field], float) else str(r[field]) for r in runs]
    return said[0] if len(set(said)) == 1 else " / ".join(said)
