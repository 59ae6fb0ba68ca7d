"""The family card: OUT/family/README.md, a table of the sizes the bench handed over, and family.png, their test
top-1 against forward FLOPs per image (the family's accuracy-cost front), with the ancestor marked."""

from __future__ import annotations

from pathlib import Path

from lgtool.bench.plots import figure, matplotlib
from lgtool.bench.report import _n

PLOT = "family.png"


def card(family: dict, report: dict) -> str:
    """The markdown of the family card, from family.json's entries and the bench's report."""
    anc, flops = report["ancestor"], report["flops"]
    lines = [
        "# The family `lgtool bench` handed over",
        "",
        f"Data: {report['data']} ({report['train_images']:,} training and {report['val_images']:,} validation "
        f"images). Ancestor: `{anc['name']}`, test top-1 {anc['top1']:.4f}, {_n(flops['teacher'])} FLOPs per image.",
        "",
        "At every benched size, the model that scored best on the validation split among every route the bench",
        f"trained there on its first seed ({report['config']['seeds'][0]}; equal validation top-1: the cheaper "
        f"route). The test split only reports: {_test_images(family)} images. Training FLOPs: a student step is "
        "3 forwards, a teacher forward its own FLOPs; a learngene's learning is shared equally by the sizes it "
        "makes.",
        "",
        "| size | route | params | FLOPs / image | training FLOPs | val top-1 | test top-1 | rate | warmup | layers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, e in family.items():
        layers = f"{e['layer_policy']} {e['layers']}" if "layer_policy" in e else ""
        rate = f"{e['lr']:g}" if "lr" in e else ""
        warmup = f"{e['warmup_epochs']:g}" if "warmup_epochs" in e else ""
        where = f"[{size}]({size}/)" if e["path"] else f"{size} (not kept)"
        lines.append(
            f"| {where} | {e['route']} | {e['params']:,} | {_n(e['forward_flops'])} | {_n(e['training_flops'])} | "
            f"{e['val_top1']:.4f} | {e['top1']:.4f} | {rate} | {warmup} | {layers} |"
        )
    lines += [f"- {size}: {e['note']}" for size, e in family.items() if "note" in e]
    first = next((size for size, e in family.items() if e["path"]), "d6-w64")
    lines += [
        "",
        f"![test top-1 against forward FLOPs]({PLOT})",
        "",
        "Each folder loads with plain timm, no lgtool needed:",
        "",
        "```python",
        f'model = timm.create_model("local-dir:{first}", pretrained=True)',
        "```",
        "",
        "`recipe.sh` rebuilds every size by the route the bench chose for it, with its rate, warmup, layer policy",
        "and epochs; its data flags are variables (`DATA=/my/data TRAIN_SAMPLES= bash -e recipe.sh`).",
        "",
    ]
    return "\n".join(lines)


def _test_images(family: dict) -> str:
    counts = sorted({e.get("test_images") for e in family.values()} - {None})
    return " or ".join(f"{n:,}" for n in counts) or "its"


def plot_front(family: dict, report: dict, path: Path) -> None:
    """Test top-1 against forward FLOPs per image: every size of the family, its front joined, the ancestor a star."""
    points = sorted((e["forward_flops"], e["top1"], size, e["route"]) for size, e in family.items())
    front, best = [], -1.0
    for x, y, *_ in points:
        if y > best:  # a larger model earns its place on the front only by scoring higher
            front.append((x, y))
            best = y

    def draw(fig, ax):
        ax.plot(*zip(*front, strict=True), "-", color="C0", alpha=0.5, label="accuracy-cost front")
        for x, y, size, route in points:
            ax.plot([x], [y], "o", color="C0", ms=5)
            ax.annotate(f"{size}\n{route}", (x, y), fontsize=6, xytext=(4, -10), textcoords="offset points")
        anc = report["ancestor"]
        ax.plot([report["flops"]["teacher"]], [anc["top1"]], "*", color="C3", ms=12, label=f"ancestor {anc['name']}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overprint on a short axis
        ax.margins(x=0.08, y=0.08)  # the ancestor's star sits at the corner otherwise
        ax.set_xlabel("forward FLOPs per image")
        ax.set_ylabel("test top-1")
        ax.set_title("the family: test top-1 against inference cost", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")

    if points:
        figure(path, draw, figsize=(6.4, 4.4))
