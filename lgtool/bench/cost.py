"""What each route to a family costs, in FLOPs and images, and which is cheapest.

Cost is compute: a student step costs 3x its forward (forward + backward), a teacher forward its own FLOPs,
both per image. Routes:
- a learngene: learning it once (Aux-Net steps + teacher forwards), calibrating every size (WAVE), and the
  fine-tune of every size (0 epochs: nothing); a fine-tuned size may be used as expanded instead, where that
  saves more against the best alternative (which then only has to match the expanded model);
- the best alternative: per size, the cheapest alternative run (scratch, kd-scratch, weight selection, weight
  selection + KD, at any budget on its curve) whose validation top-1 matches the learngene's there. Where none
  matches, the cheapest longest run is counted and the size is marked ">", so the ratio is a lower bound.
The rate search is not counted for any route: every route searches the same grid.
"""

from __future__ import annotations

from lgtool.base.lazy import lazy, torch
from lgtool.rules import RULES

flop_counter = lazy("torch.utils.flop_counter")  # torch-free at import: the CLI reads INITS from here

LEARNGENES = tuple(RULES)
ALTERNATIVES = ("scratch", "kd-scratch", "weight-selection", "weight-selection+kd")
INITS = (*LEARNGENES, *ALTERNATIVES)
DISTILLED = ("kd-scratch", "weight-selection+kd")  # the ancestor teaches while they train
STEP = 3  # a training step's FLOPs per image, in forwards: forward + backward (2x)


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
    """Learning one learngene: its student steps (at the Aux size, or at every family size it trained) and
    the teacher forwards it ran."""
    sizes = info.get("student_images") or {info.get("aux_size"): info.get("images")}
    if any(n is None or size not in flops for size, n in sizes.items()):
        return None
    student = sum(STEP * n * flops[size] for size, n in sizes.items())
    return student + (info.get("teacher_images") or 0) * flops["teacher"]


def curves(rows) -> dict:
    """(depth, width, alternative) -> its trained rows by budget."""
    out = {}
    for r in rows:
        if r["init"] in ALTERNATIVES and "val_top1" in r:
            out.setdefault((r["depth"], r["width"], r["init"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["epochs"]) for k, v in out.items()}


def cheapest_match(depth: int, width: int, target: float, curve: dict, flops: dict, alternatives=ALTERNATIVES):
    """The cheapest alternative run here whose validation top-1 reaches `target`: (row, exact). Where none does,
    the cheapest of the runs that got furthest (their cost a lower bound) with exact False; None without runs."""
    runs = [curve[(depth, width, a)] for a in alternatives if (depth, width, a) in curve]
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


def family_cost(rows, learn_rows: dict, flops: dict, epochs: int, alternatives=ALTERNATIVES) -> dict:
    """Per learngene: its route and the best alternative route over the sizes both cover, and their ratio.

    At each size the learngene takes the budget (fine-tuned, or used as expanded) that saves the most FLOPs
    against the best alternative matching it there; both are judged on validation, as every choice here."""
    curve = curves(rows)
    out = {}
    for method, info in learn_rows.items():
        sizes, budgets, route, other, route_images, other_images, exact = {}, {}, 0, 0, 0, 0, True
        for r in rows:
            if r["init"] != method or r["epochs"] != epochs or "val_top1" not in r:
                continue
            options = []  # (FLOPs saved against the best alternative, the learngene's budget, that alternative)
            for own in budgets_of(r):
                found = cheapest_match(r["depth"], r["width"], own["val_top1"], curve, flops, alternatives)
                if found is not None:
                    options.append((row_flops(found[0], flops) - row_flops(own, flops), own, found))
            if not options:
                continue  # a size without alternatives is in neither route
            _, own, (alt, hit) = max(options, key=lambda o: o[0])  # ties: the fine-tuned budget, listed first
            exact &= hit
            route += row_flops(own, flops)
            route_images += own["train_images"] + own.get("calibration_images", 0)
            other += row_flops(alt, flops)
            other_images += alt["train_images"]
            sizes[size_name(r["depth"], r["width"])] = f"{alt['init']}@{alt['epochs']}" + ("" if hit else " (>)")
            budgets[size_name(r["depth"], r["width"])] = own["epochs"]
        learned = learn_flops(info, flops)
        known = bool(sizes) and learned is not None
        total = route + (learned or 0)
        total_images = route_images + (info.get("images") or 0)
        out[method] = {
            "learn_flops": learned,
            "sizes_flops": route,
            "route_flops": total if known else None,
            "route_images": total_images if known else None,
            "alternative_flops": other if known else None,
            "alternative_images": other_images if known else None,
            "alternative_per_size": sizes,
            "epochs_per_size": budgets,  # the learngene's fine-tune epochs at each size (0: used as expanded)
            "ratio_flops": round(other / total, 2) if known and total else None,
            "ratio_images": round(other_images / total_images, 2) if known and total_images else None,
            "exact": exact,  # False: some size was never matched, the ratios are lower bounds
        }
    return out


def recommend(rows, learn_rows: dict, flops: dict, epochs: int) -> dict:
    """Per size: the cheapest route that reaches the best learngene's validation top-1 there, and its cost.

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
        reaching = [(c, r) for c, r in options if r["val_top1"] >= target] if target is not None else []
        if target is not None:
            found = cheapest_match(depth, width, target, curve, flops)
            if found and found[1]:
                reaching.append((row_flops(found[0], flops), found[0]))
        else:  # nobody sets a target: the alternative that does best on validation
            runs = [r for a in ALTERNATIVES for r in curve.get((depth, width, a), [])]
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
