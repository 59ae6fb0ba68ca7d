"""The bench's verdict over its seeds: rows averaged over the seeds, the tie margin, each learngene's ratio against the
best alternative with an interval from a bootstrap over the seeds, the verdict word that interval allows, and what
a family must hold for the learning to pay (`break_even_sizes`, `marginal_flops`).

Every choice reads validation top-1 only, and a learngene's budget at a size reads only its own rows (`cost.py`).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

from lgtool.bench.cost import LEARNGENES, family_cost

AVERAGED = ("val_top1", "top1", "val_at_init", "top1_at_init", "train_images", "teacher_images", "calibration_images")
RANGED = ("val_top1", "top1")  # the mean row also carries their [min, max] over the seeds
MAX_RESAMPLES = 2000  # past this many orderings of the seeds, the bootstrap draws this many at random (seeded)
BUDGET_RULE = (
    "at each size, the fewest fine-tune epochs whose mean validation top-1 is within the margin of the learngene's "
    "best budget there; no alternative's result is read"
)


def key4(row: dict) -> tuple:
    return row["depth"], row["width"], row["init"], row["epochs"]


def by_seed(rows) -> dict:
    """seed -> (depth, width, init, epochs) -> row."""
    out = {}
    for r in rows:
        out.setdefault(r["seed"], {})[key4(r)] = r
    return out


def mean_rows(rows_by_seed: dict, seeds) -> list[dict]:
    """One row per (depth, width, init, epochs) that every seed in `seeds` ran, its numbers averaged over `seeds` (a
    seed given twice counts twice: a bootstrap resample). Skipped where any seed skipped it."""
    if not seeds:
        return []
    common = set.intersection(*(set(rows_by_seed.get(s, {})) for s in seeds))
    out = []
    for key in [k for k in rows_by_seed.get(seeds[0], {}) if k in common]:
        runs = [rows_by_seed[s][key] for s in seeds]
        row = dict(zip(("depth", "width", "init", "epochs"), key, strict=True))
        skipped = next((r["skipped"] for r in runs if "skipped" in r), None)
        if skipped is not None:
            out.append({**row, "skipped": skipped})
            continue
        row.update(seeds=len(set(seeds)), params=runs[0].get("params"))
        for field in AVERAGED:
            values = [r.get(field) for r in runs]
            if all(v is not None for v in values):
                row[field] = statistics.fmean(values)
                if field in RANGED:
                    row[f"{field}_range"] = [min(values), max(values)]
        out.append(row)
    return out


def mean_learned(learned: dict, seeds) -> dict:
    """method -> what learning it cost and scored, averaged over `seeds` (`learned`: str(seed) -> method -> info);
    the other fields (path, params, init) are the first seed's."""
    per_seed = [learned.get(str(s), {}) for s in seeds]
    methods = [m for m in per_seed[0] if all(m in p for p in per_seed)] if per_seed else []
    out = {}
    for m in methods:
        infos = [p[m] for p in per_seed]
        info = dict(infos[0])
        for field in ("images", "teacher_images", "ordering_images", "aux_val_top1", "seconds"):
            values = [i.get(field) for i in infos]
            info[field] = statistics.fmean(values) if all(v is not None for v in values) else None
        sizes = [i.get("student_images") for i in infos]
        if all(isinstance(s, dict) for s in sizes) and sizes:
            info["student_images"] = {k: statistics.fmean(s.get(k, 0) for s in sizes) for k in sizes[0]}
        aux = [i.get("aux_val_top1") for i in infos]
        if all(a is not None for a in aux):
            info["aux_val_top1_range"] = [min(aux), max(aux)]
        out[m] = info
    return out


def measured_margin(rows_by_seed: dict, seeds: list, val_images: int, declared: float | None = None) -> dict:
    """The tie margin: `declared` (--tie-margin), else the noise of a mean validation top-1 over the seeds, the larger
    of two estimates from the learngene rows: the validation split's binomial standard error at their mean top-1,
    sqrt(p(1 - p) / (images x seeds)), and their spread over the seeds, the pooled standard deviation / sqrt(seeds)."""
    genes = [r for r in mean_rows(rows_by_seed, seeds) if r["init"] in LEARNGENES and "val_top1" in r]
    k = len(seeds)
    p = statistics.fmean(r["val_top1"] for r in genes) if genes else 0.5
    standard_error = math.sqrt(p * (1 - p) / (max(1, val_images) * k))
    spread = None
    if k > 1 and genes:
        variances = [
            statistics.variance([rows_by_seed[s][key4(r)]["val_top1"] for s in seeds]) for r in genes
        ]  # fmt: skip
        spread = math.sqrt(statistics.fmean(variances)) / math.sqrt(k)
    if declared is not None:
        value, source = declared, "--tie-margin"
    elif spread is not None and spread > standard_error:
        value, source = spread, "the learngene rows' spread over the seeds"
    else:
        value, source = standard_error, "the validation split's standard error"
    return {
        "value": round(value, 4),
        "source": source,
        "standard_error": round(standard_error, 4),
        "seed_spread": None if spread is None else round(spread, 4),
    }


def resamples(seeds: list) -> list[tuple]:
    """The seed bootstrap: every ordered resample of the seeds with replacement, or `MAX_RESAMPLES` drawn at
    random (seeded, so the interval is the same on every run) where there are more."""
    n = len(seeds)
    if n**n <= MAX_RESAMPLES:
        return list(itertools.product(seeds, repeat=n))
    draw = random.Random(0)
    return [tuple(draw.choice(seeds) for _ in range(n)) for _ in range(MAX_RESAMPLES)]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def verdict(interval: list | None, exact: bool) -> str:
    """`cheaper` or `dearer` only where the whole interval lies above or below 1, else `tie`. A ratio that is a
    lower bound (some size never matched) can show the learngene cheaper, never dearer."""
    if interval is None:
        return "tie"
    low, high = interval
    if low > 1:
        return "cheaper"
    if high < 1 and exact:
        return "dearer"
    return "tie"


def break_even_sizes(learned: float | None, per_size: dict) -> int | None:
    """How many sizes like the benched ones a family needs before learning the learngene pays for itself: its
    learning divided by what one size saves on average against the best alternative, rounded up. None where a size
    saves nothing on average (the learning never pays)."""
    if learned is None or not per_size:
        return None
    saving = statistics.fmean(s["alternative"] - s["learngene"] for s in per_size.values())
    return max(1, math.ceil(learned / saving)) if saving > 0 else None


def marginal_flops(per_size: dict) -> dict | None:
    """What one more size costs by each route, on average over the benched sizes: the learngene's expand
    (calibration) and its budget, against the alternative that matches it there."""
    if not per_size:
        return None
    return {
        route: round(statistics.fmean(s[route] for s in per_size.values())) for route in ("learngene", "alternative")
    }


def seeded_cost(rows_by_seed, learned, seeds, flops, epochs, margin, budget=None, alternatives=None) -> dict:
    """Per learngene: `family_cost` on the rows averaged over every seed, with 95% intervals over the seed bootstrap
    of its ratio and of both routes' FLOPs (None with one seed, whose verdict is then `tie`: it cannot show its own
    noise), the verdict word, the break-even family size, the marginal cost of one more size, and each seed's own
    match per size (`alternative_by_seed`: how the epochs to match spread)."""

    def cost(sample):
        return family_cost(mean_rows(rows_by_seed, sample), mean_learned(learned, sample), flops, epochs, margin,
                           budget, alternatives)  # fmt: skip

    central = cost(seeds)
    drawn = {m: {k: [] for k in SPREAD} for m in central}
    for sample in resamples(seeds) if len(seeds) > 1 else []:
        for m, c in cost(sample).items():
            for k in SPREAD:
                if m in drawn and c[k] is not None:
                    drawn[m][k].append(c[k])
    alone = {s: cost([s]) for s in seeds} if len(seeds) > 1 else {}
    out = {}
    for m, c in central.items():
        intervals = {
            f"{k}_interval": _interval(drawn[m][k] or [c[k]], 2 if k == "ratio_flops" else 0)
            if c[k] is not None and len(seeds) > 1  # one seed shows no noise: no interval, no verdict
            else None
            for k in SPREAD
        }
        out[m] = {
            **c,
            **intervals,
            "verdict": verdict(intervals["ratio_flops_interval"], c["exact"]),
            "break_even_sizes": break_even_sizes(c["learn_flops"], c["per_size"]),
            "marginal_flops": marginal_flops(c["per_size"]),
            "alternative_by_seed": {str(s): a[m]["alternative_per_size"] for s, a in alone.items() if m in a},
        }
    return out


SPREAD = ("ratio_flops", "route_flops", "alternative_flops")  # the figures given with an interval over the seeds


def _interval(values: list, digits: int) -> list:
    low, high = percentile(values, 2.5), percentile(values, 97.5)
    return [round(low, digits), round(high, digits)] if digits else [int(low), int(high)]
