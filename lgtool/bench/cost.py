"""What each route to a family costs, in FLOPs and images, and which is cheapest.

Cost is compute: a student step costs 3x its forward (forward + backward), a teacher forward its own FLOPs,
both per image. Routes:
- a learngene: learning it once (Aux-Net steps + teacher forwards), calibrating every size (WAVE), and the
  fine-tune of every size at its budget, fixed from its own rows before the race: used as expanded (0 epochs)
  where that scores within the tie margin of its fine-tuned model on validation;
- the best alternative: per size, the cheapest alternative run (any baseline in `lgtool.baselines`: scratch,
  kd-scratch, weight selection, weight selection + KD; at any budget on its curve) whose validation top-1 is within
  the tie margin of the learngene's there. Where none is, the cheapest longest run is counted and the size is marked
  ">", so the ratio is a lower bound.
The rate search is not counted for any route: every route searches the same grid.
"""

from __future__ import annotations

from lgtool.base.lazy import lazy, torch
from lgtool.baselines import BASELINES
from lgtool.rules import RULES

flop_counter = lazy("torch.utils.flop_counter")  # torch-free at import: the CLI reads `init_names()` from here

LEARNGENES = tuple(RULES)
STEP = 3  # a training step's FLOPs per image, in forwards: forward + backward (2x)
EPS = 1e-9  # top-1 within the margin "exactly" still matches despite floating point


def init_names() -> tuple[str, ...]:
    """Every route a bench may run, in the order its rows, plots and colours follow: the learngenes, then the
    baselines as registered (read now: a baseline registered later is in)."""
    return (*LEARNGENES, *BASELINES)


def size_name(depth: int, width: int) -> str:
    return f"d{depth}-w{width}"


def forward_flops(model, view) -> int:
    """FLOPs of one forward pass on one image (torch's counter: a multiply-add is 2)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, view.in_chans, view.img_size, view.img_size))
    model.train(was_training)
    return int(counter.get_total_flops())


def row_flops(row: dict, flops: dict) -> int:
    """One row's training compute: its student steps (calibration included) and its teacher forwards."""
    student = row.get("train_images", 0) + row.get("calibration_images", 0)
    return (
        STEP * student * flops[size_name(row["depth"], row["width"])] + row.get("teacher_images", 0) * flops["teacher"]
    )


def learn_flops(info: dict, flops: dict) -> int | None:
    """Learning one learngene: its student steps (at the Aux size, or at every family size it trained), the
    teacher forwards it ran, and the images that scored its channels' order (a forward and a backward each, at the
    Aux size)."""
    sizes = info.get("student_images") or {info.get("aux_size"): info.get("images")}
    if any(n is None or size not in flops for size, n in sizes.items()):
        return None
    student = sum(STEP * n * flops[size] for size, n in sizes.items())
    ordering = STEP * (info.get("ordering_images") or 0) * flops.get(info.get("aux_size"), 0)
    return student + ordering + (info.get("teacher_images") or 0) * flops["teacher"]


def curves(rows) -> dict:
    """(depth, width, alternative) -> its trained rows by budget."""
    out = {}
    for r in rows:
        if r["init"] in BASELINES and "val_top1" in r:
            out.setdefault((r["depth"], r["width"], r["init"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["epochs"]) for k, v in out.items()}


def cheapest_match(depth: int, width: int, target: float, curve: dict, flops: dict, alternatives=None):
    """The cheapest alternative run here (of `alternatives`, default every baseline) whose validation top-1 reaches
    `target`: (row, exact). Where none does, the cheapest of the runs that got furthest (their cost a lower bound)
    with exact False; None without runs."""
    names = BASELINES if alternatives is None else alternatives
    runs = [curve[(depth, width, a)] for a in names if (depth, width, a) in curve]
    hits = [r for c in runs for r in c if r["val_top1"] >= target]
    if hits:
        return min(hits, key=lambda r: row_flops(r, flops)), True
    longest = [c[-1] for c in runs]
    return (min(longest, key=lambda r: row_flops(r, flops)), False) if longest else None


def budgets_of(row: dict) -> list[dict]:
    """A learngene row's budgets at its size: as fine-tuned, and (where it was) as expanded, with the 0-epoch
    numbers the row measured on the same splits. The calibration a WAVE size needs is paid in both."""
    if row["epochs"] == 0 or row.get("val_at_init") is None or row.get("top1_at_init") is None:
        return [row]
    measured = {"val_top1": row["val_at_init"], "top1": row["top1_at_init"]}
    return [row, {**row, **measured, "epochs": 0, "train_images": 0, "teacher_images": 0}]


def learngene_budget(options: list[dict], margin: float) -> dict:
    """A learngene's budget at one size, read from its own budgets there only (never an alternative's result): the
    fewest fine-tune epochs whose validation top-1 is within `margin` of its best budget's."""
    best = max(o["val_top1"] for o in options)
    return min((o for o in options if o["val_top1"] >= best - margin - EPS), key=lambda o: o["epochs"])


def family_cost(rows, learn_rows: dict, flops: dict, epochs: int, margin: float = 0.0, budget: int | None = None,
                alternatives=None) -> dict:  # fmt: skip
    """Per learngene: its route and the best alternative route over the sizes both cover, and their ratio.

    At each size the learngene's budget is fixed before the race (`learngene_budget`; or `budget` epochs, 0 or
    `epochs`, at every size), and the best alternative is the cheapest run whose validation top-1 is within `margin`
    of that budget's. `per_size` holds both routes' FLOPs at each size (the learning not included)."""
    curve = curves(rows)
    out = {}
    for method, info in learn_rows.items():
        per_size, chosen, budgets, exact = {}, {}, {}, True
        route_images = other_images = 0
        for r in rows:
            if r["init"] != method or r["epochs"] != epochs or "val_top1" not in r:
                continue
            options = budgets_of(r)
            fixed = [o for o in options if o["epochs"] == budget]
            own = fixed[0] if budget is not None else learngene_budget(options, margin)
            if budget is not None and not fixed:
                continue  # this size was not measured at that budget
            found = cheapest_match(r["depth"], r["width"], own["val_top1"] - margin - EPS, curve, flops, alternatives)
            if found is None:
                continue  # a size without alternatives is in neither route
            alt, hit = found
            exact &= hit
            size = size_name(r["depth"], r["width"])
            per_size[size] = {"learngene": row_flops(own, flops), "alternative": row_flops(alt, flops)}
            route_images += own["train_images"] + own.get("calibration_images", 0)
            other_images += alt["train_images"]
            chosen[size] = f"{alt['init']}@{alt['epochs']}" + ("" if hit else " (>)")
            budgets[size] = own["epochs"]
        learned = learn_flops(info, flops)
        known = bool(per_size) and learned is not None
        route = sum(s["learngene"] for s in per_size.values())
        other = sum(s["alternative"] for s in per_size.values())
        total = route + (learned or 0)
        total_images = route_images + (info.get("images") or 0)
        out[method] = {
            "learn_flops": learned,
            "sizes_flops": route,
            "route_flops": total if known else None,
            "route_images": total_images if known else None,
            "alternative_flops": other if known else None,
            "alternative_images": other_images if known else None,
            "alternative_per_size": chosen,
            "epochs_per_size": budgets,  # the learngene's fine-tune epochs at each size (0: used as expanded)
            "per_size": per_size,
            "ratio_flops": round(other / total, 2) if known and total else None,
            "ratio_images": round(other_images / total_images, 2) if known and total_images else None,
            "exact": exact,  # False: some size was never matched, the ratios are lower bounds
        }
    return out


def recommend(rows, learn_rows: dict, flops: dict, epochs: int, margin: float = 0.0) -> dict:
    """Per size: the cheapest route within `margin` of the best learngene's validation top-1 there, and its cost.

    A learngene's learning is shared by every size it makes, so a size is charged its equal share."""
    curve = curves(rows)
    made = {}
    for r in rows:
        if r["init"] in LEARNGENES and r["epochs"] == epochs and "val_top1" in r:
            made.setdefault(r["init"], []).append(r)
    sizes = dict.fromkeys((r["depth"], r["width"]) for r in rows)
    out = {}
    for depth, width in sizes:
        genes = [r for m in made.values() for r in m if (r["depth"], r["width"]) == (depth, width)]
        options = []
        for r in genes:
            learned = learn_flops(learn_rows.get(r["init"], {}), flops)
            if learned is not None:
                options.append((learned / len(made[r["init"]]) + row_flops(r, flops), r))
        target = max((r["val_top1"] for r in genes), default=None)
        reached = None if target is None else target - margin - EPS
        reaching = [(c, r) for c, r in options if r["val_top1"] >= reached] if target is not None else []
        if target is not None:
            found = cheapest_match(depth, width, reached, curve, flops)
            if found and found[1]:
                reaching.append((row_flops(found[0], flops), found[0]))
        else:  # nobody sets a target: the alternative that does best on validation
            runs = [r for a in BASELINES for r in curve.get((depth, width, a), [])]
            reaching = [(row_flops(r, flops), r) for r in runs if r["val_top1"] == max(x["val_top1"] for x in runs)]
        if not reaching:
            continue
        cost, r = min(reaching, key=lambda cr: cr[0])
        out[size_name(depth, width)] = {
            "route": f"{r['init']}@{r['epochs']}",
            "flops": int(cost),
            "val_top1": r["val_top1"],
            "top1": r["top1"],
            "target_val_top1": target,
        }
    return out
