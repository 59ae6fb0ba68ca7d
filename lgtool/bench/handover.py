"""The family a bench hands over: at every benched size, the model it trained that scored best on validation.

Every finished row offers what it trained: a learngene row its Desc-Net as fine-tuned and as expanded, an
alternative its trained model. Validation decides; equal validation top-1 goes to the cheaper route (training
FLOPs, a learngene's learning shared equally by the sizes it makes); the test split never decides. The best so far
is written as it comes to OUT/family/d<depth>-w<width>/, a plain-timm folder whose config.json records which
budget of which row it is, so a bench that is interrupted resumes with what it kept. At the end the family is
summed up in family.json, a card (README.md and family.png) and recipe.sh (`lgtool.bench.rebuild`).
"""

from __future__ import annotations

from pathlib import Path

from lgtool.base.atomic import atomic_file, write_json
from lgtool.base.errors import InputError
from lgtool.bench.card import PLOT, card, plot_front
from lgtool.bench.cost import LEARNGENES, budgets_of, row_flops, size_name
from lgtool.bench.rebuild import recipe
from lgtool.hub import read_config, write_descnet
from lgtool.training.ancestor import load_folder

FAMILY = "family"
# What a family entry carries over from its row: how it was trained (the recipe repeats it) and what it scored.
TRAINED_WITH = ("lr", "warmup_epochs", "layer_policy", "layers", "head", "calibration_images")


def entry(budget: dict, shares: dict, flops: dict) -> dict:
    """One budget of one row as a family.json entry: its route, size, cost and top-1 on both splits."""
    size = size_name(budget["depth"], budget["width"])
    kept = TRAINED_WITH if budget["epochs"] else ("layers", "head", "calibration_images")
    return {
        "route": f"{budget['init']}@{budget['epochs']}",
        "init": budget["init"],
        "epochs": budget["epochs"],
        "depth": budget["depth"],
        "width": budget["width"],
        "params": budget["params"],
        "forward_flops": flops[size],
        "training_flops": int(row_flops(budget, flops) + shares.get(budget["init"], 0)),
        "val_top1": budget["val_top1"],
        "top1": budget["top1"],
        **{k: budget[k] for k in kept if k in budget},
    }


def candidates(row: dict, shares: dict, flops: dict) -> list[dict]:
    """What a finished row offers the family: its trained budget, and a learngene row also its Desc-Net as
    expanded (0 epochs). A skipped row offers nothing."""
    if "val_top1" not in row:
        return []
    budgets = budgets_of(row) if row["init"] in LEARNGENES else [row]
    return [entry(b, shares, flops) for b in budgets]


def better(new: dict, old: dict | None) -> bool:
    """Whether `new` should replace `old` in the family: higher validation top-1, or the same and cheaper."""
    if old is None:
        return True
    if new["val_top1"] != old["val_top1"]:
        return new["val_top1"] > old["val_top1"]
    return new["training_flops"] < old["training_flops"]


def choose(entries: list[dict]) -> dict | None:
    """The family's pick among `entries` of one size (see `better`); None if there are none."""
    best = None
    for e in entries:
        if better(e, best):
            best = e
    return best


def learn_shares(learn_rows: dict, makes: dict, learn_flops) -> dict:
    """Each learngene's learning FLOPs shared equally by the benched sizes it makes (`makes`: method -> sizes);
    `learn_flops(info)` prices one learning (None where unknown: no share)."""
    shares = {}
    for method, info in learn_rows.items():
        learned = learn_flops(info)
        if learned is not None and makes.get(method):
            shares[method] = learned / len(makes[method])
    return shares


class Keeper:
    """Keeps the best model per size in OUT/family/ while the bench runs (`offer`), and reads back what an
    earlier run of the same bench kept (`kept`)."""

    def __init__(self, folder: Path, flops: dict, shares: dict, norm, sources: dict):
        self.folder, self.flops, self.shares, self.norm = Path(folder), flops, shares, norm
        self.sources = sources  # init -> where its models come from (the ancestor, a learngene file)
        self.folder.mkdir(exist_ok=True)
        self.kept = read_kept(self.folder)

    def offer(self, row: dict, models: dict, arch) -> None:
        """`models`: epochs -> the model this row holds at that budget; `arch`: their architecture. Writes the
        row's best budget over the size's folder if it beats what is kept there."""
        offered = [e for e in candidates(row, self.shares, self.flops) if e["epochs"] in models]
        best = choose(offered)
        size = size_name(row["depth"], row["width"])
        if best is None or not better(best, self.kept.get(size)):
            return
        lineage = {"init": best["route"], "source": self.sources.get(best["init"]), "family": best}
        state = models[best["epochs"]].state_dict()
        write_descnet(state, arch, self.folder / size, self.norm, lineage, force=True)
        self.kept[size] = best


def read_kept(folder: Path) -> dict:
    """size -> the family entry of the model kept in folder/<size>/ (its config.json says which it is)."""
    kept = {}
    for sub in sorted(Path(folder).glob("d*-w*")):
        try:
            family = read_config(sub).get("lgtool", {}).get("family")
        except InputError:
            continue  # not a folder this bench wrote: never taken for one
        if isinstance(family, dict) and (sub / "model.safetensors").is_file() and "val_top1" in family:
            kept[sub.name] = family
    return kept


def measure_kept(folder: Path, kept: dict, top1_of, test_images: int) -> None:
    """Each kept model's test top-1 on the whole test split (`top1_of(model)`; the bench reports on a subset), into
    its entry in `kept` and its folder's config.json, which says which row it is."""
    for size, entry in kept.items():
        entry.update(top1=top1_of(load_folder(folder / size)), test_images=test_images)
        config = read_config(folder / size)
        config["lgtool"]["family"] = entry
        write_json(folder / size / "config.json", config)


def family_entries(rows: list, kept: dict, shares: dict, flops: dict, sizes: list, test_images=None) -> dict:
    """family.json: per benched size, the model kept for it (its `path`, relative to the family folder, its test
    top-1 measured on the whole test split), or, where none was kept (--no-family, or rows from a run that kept
    none), the best row's budget with `path` None and its test top-1 on the bench's `test_images`.
    A kept model that is not the best row (that row's model was not kept) says so in `note`."""
    out = {}
    for depth, width in sizes:
        size = size_name(depth, width)
        here = [e for r in rows if (r["depth"], r["width"]) == (depth, width) for e in candidates(r, shares, flops)]
        best = choose(here)
        if size in kept:
            out[size] = {"path": size, **kept[size]}
            if best is not None and better(best, kept[size]):
                out[size]["note"] = f"{best['route']} scored higher on validation, but its model was not kept"
        elif best is not None:
            out[size] = {"path": None, **best, "test_images": test_images}
    return out


def write_family(folder: Path, report: dict, io, given: dict, shares: dict, kept: dict) -> dict:
    """family.json, the family card (README.md, family.png) and recipe.sh in `folder`; returns family.json."""
    sizes = list(dict.fromkeys((r["depth"], r["width"]) for r in report["rows"]))
    family = family_entries(report["rows"], kept, shares, report["flops"], sizes, report.get("test_images"))
    folder.mkdir(exist_ok=True)
    write_json(folder / "family.json", family)
    with atomic_file(folder / "README.md") as tmp:
        tmp.write_text(card(family, report))
    plot_front(family, report, folder / PLOT)
    with atomic_file(folder / "recipe.sh") as tmp:
        tmp.write_text(recipe(family, report, io, given))
    (folder / "recipe.sh").chmod(0o755)  # after the rename: atomic_file gives every file the umask's mode
    return family
