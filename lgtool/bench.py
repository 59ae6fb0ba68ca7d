"""`lgtool bench`: does a learngene family beat its alternatives on this data, at equal fine-tune budget?

For every depth x init (sws, tleg, wave, scratch, weight-selection) build the Desc-Net, fine-tune it for
`epochs`, evaluate on the held-out split. Scratch is also trained for each of `scratch_epochs`, to say
how long it needs to catch up (the training-cost ratio). Each init fine-tunes at a rate suited to it
(inherited weights: a fine-tune rate; scratch: a from-scratch rate), or picks its best rate from
`lr_grid` on a validation split carved from the training data, never on the test split.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lgtool.arch import Arch, build_vit, parse_width
from lgtool.errors import InputError, UsageError
from lgtool.train import TrainConfig, evaluate, fit

INITS = ("sws", "tleg", "wave", "scratch", "weight-selection")
LEARNGENES = ("sws", "tleg", "wave")


@dataclass
class BenchConfig:
    depths: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    width: str | int = 64
    inits: list[str] = field(default_factory=lambda: list(INITS))
    epochs: int = 1  # fine-tune budget of every init
    learn_epochs: int = 3
    scratch_epochs: list[int] = field(default_factory=lambda: [1, 2, 4])
    lr_grid: list[float] | None = None
    finetune_lr: float = 5e-4  # inherited weights
    scratch_lr: float = 2e-3  # timm init
    learn_lr: float = 2e-3
    batch_size: int = 128
    train_samples: int | None = 10_000
    aux_depth: int = 8
    sws_stages: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    wave_template_size: int = 32
    seed: int = 0
    # the default ancestor, trained once and cached when --ancestor is not given
    ancestor_width: int = 128
    ancestor_depth: int = 8
    ancestor_epochs: int = 3
    ancestor_lr: float = 2e-3

    def __post_init__(self):
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            raise UsageError(f"unknown init {unknown[0]!r}: choose from {', '.join(INITS)}")
        if not self.depths or min(self.depths) < 1:
            raise UsageError("--depths takes positive integers, e.g. 2,4,6,8")


def cache_dir() -> Path:
    root = os.environ.get("LGTOOL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "lgtool")
    return Path(root).expanduser()


def default_ancestor(cfg: BenchConfig, data: str, data_dir, log) -> Path:
    """A plain ViT trained from scratch on the data, cached so that later benches reuse it."""
    from lgtool.finetune import finetune

    key = (
        f"{Path(data).name}-w{cfg.ancestor_width}-d{cfg.ancestor_depth}-n{cfg.train_samples}"
        f"-e{cfg.ancestor_epochs}-s{cfg.seed}"
    )
    folder = cache_dir() / "ancestors" / key
    if (folder / "best" / "model.safetensors").is_file():
        log(f"ancestor: reusing {folder / 'best'}")
        return folder / "best"
    log(f"ancestor: training a {cfg.ancestor_width}-wide, {cfg.ancestor_depth}-deep ViT from scratch (cache {folder})")
    train_cfg = TrainConfig(
        epochs=cfg.ancestor_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.ancestor_lr,
        kd="none",
        warmup_epochs=0.2,
        augment="none",
        seed=cfg.seed,
    )
    finetune(
        None,
        data,
        folder,
        init="scratch",
        data_dir=data_dir,
        width=cfg.ancestor_width,
        depth=cfg.ancestor_depth,
        train_samples=cfg.train_samples,
        cfg=train_cfg,
        force=True,
        log=_reporter(log, "ancestor"),
    )
    return folder / "best"


def _reporter(log, what):
    def report(**e):
        if "epoch_end" in e:
            log(f"{what}: epoch {e['epoch_end']}/{e['epochs']} held-out top-1 {e['top1']:.4f}")

    return report


def build_init(init: str, depth: int, arch: Arch, genes: dict, ancestor_state: dict) -> torch.nn.Module:
    """The Desc-Net of one row before fine-tuning; InputError says why an init cannot make this size."""
    from lgtool.baselines import weight_selection
    from lgtool.materialize import expand

    torch.manual_seed(depth)  # fresh heads and scratch weights: the same for every run of the bench
    if init in LEARNGENES:
        return expand(genes[init], depth=depth, width=arch.embed_dim, num_classes=arch.num_classes)
    model = build_vit(arch.model_copy(update={"depth": depth}))
    if init == "weight-selection":
        weight_selection(ancestor_state, model)
    return model


def run_bench(
    cfg: BenchConfig,
    out: Path,
    *,
    ancestor: str | None = None,
    learngenes: list[str] = (),
    data: str = "fashion-mnist",
    data_dir: str | None = None,
    resume: bool = False,
    log=print,
) -> dict:
    from lgtool.ancestor import load_ancestor
    from lgtool.data import balanced_subset, load_data
    from lgtool.learn import learn
    from lgtool.learngene import load_learngene

    out = Path(out)
    started = time.perf_counter()
    say = log

    def log(msg):
        say(f"[{time.perf_counter() - started:5.0f}s] {msg}")

    results_path = out / "results.json"
    previous = json.loads(results_path.read_text()) if resume and results_path.is_file() else {}
    if results_path.is_file() and not resume:
        raise InputError(f"{out} already holds a bench; pass --resume to continue it or choose another -o")
    out.mkdir(parents=True, exist_ok=True)

    dataset = load_data(data, data_dir, cfg.train_samples, seed=cfg.seed)
    val = None
    if cfg.lr_grid:  # carve a validation split from the training data for choosing learning rates
        held = balanced_subset(dataset.train.labels, max(dataset.num_classes, len(dataset.train) // 10), cfg.seed + 1)
        keep = torch.ones(len(dataset.train), dtype=torch.bool)
        keep[held] = False
        val, dataset.train = dataset.train.subset(held), dataset.train.subset(keep.nonzero().squeeze(1))

    ancestor = ancestor or str(default_ancestor(cfg, data, data_dir, log))
    teacher = load_ancestor(ancestor, num_classes=dataset.num_classes)
    from lgtool.learn import ancestor_view

    view = ancestor_view(teacher, dataset.view)
    ancestor_top1 = previous.get("ancestor_top1") or evaluate(teacher, dataset.test, view)
    log(f"ancestor {ancestor}: held-out top-1 {ancestor_top1:.4f}")
    embed_dim, heads = parse_width(cfg.width)
    arch = Arch(
        img_size=view.img_size,
        patch_size=teacher.patch_embed.patch_size[0],
        in_chans=view.in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        depth=cfg.aux_depth,
        num_classes=dataset.num_classes,
    )

    genes, learn_rows = {}, {}
    given = {load_learngene(p).method: p for p in learngenes}
    for method in [i for i in cfg.inits if i in LEARNGENES]:
        path = Path(given.get(method) or out / "learngenes" / f"{method}.safetensors")
        if not path.is_file():
            log(f"learn {method}: {cfg.learn_epochs} epochs of distillation from the ancestor")
            options = {
                "sws": {"stages": cfg.sws_stages},
                "tleg": {"aux_depth": cfg.aux_depth},
                "wave": {"aux_depth": cfg.aux_depth, "template_size": cfg.wave_template_size},
            }[method]
            t0 = time.perf_counter()
            lcfg = TrainConfig(
                epochs=cfg.learn_epochs, batch_size=cfg.batch_size, lr=cfg.learn_lr, warmup_epochs=0.2, seed=cfg.seed
            )
            r = learn(
                ancestor,
                method,
                data,
                path,
                evaluate_ancestor=False,
                resume=path.with_suffix(".ckpt") if resume and path.with_suffix(".ckpt").is_file() else None,
                data_dir=data_dir,
                width=embed_dim,
                train_samples=cfg.train_samples,
                cfg=lcfg,
                log=_reporter(log, f"learn {method}"),
                **options,
            )
            learn_rows[method] = {
                "aux_top1": r["aux_top1"],
                "images": r["images_seen"],
                "seconds": time.perf_counter() - t0,
            }
        genes[method] = load_learngene(path)
        learn_rows.setdefault(method, previous.get("learngenes", {}).get(method, {"images": None}))
        prov = genes[method].meta.provenance  # a given learngene: its cost from what `learn` recorded
        if learn_rows[method].get("images") is None and prov.get("steps") and prov.get("batch_size"):
            learn_rows[method]["images"] = prov["steps"] * prov["batch_size"]
        learn_rows[method].update(path=str(path), params=genes[method].num_params())
    ancestor_state = teacher.state_dict()

    rows = {(r["depth"], r["init"], r["epochs"]): r for r in previous.get("rows", [])}
    plan = [(d, i, cfg.epochs) for d in cfg.depths for i in cfg.inits]
    if "scratch" in cfg.inits:
        plan += [(d, "scratch", e) for d in cfg.depths for e in cfg.scratch_epochs if e != cfg.epochs]
    for depth, init, epochs in plan:
        if (depth, init, epochs) in rows:
            continue
        rows[(depth, init, epochs)] = row = run_row(
            cfg, init, depth, epochs, arch, genes, ancestor_state, dataset, val, view, log
        )
        report = summarize(cfg, arch, rows, learn_rows, ancestor, ancestor_top1, data, started)
        _write_json(results_path, report)  # after every row: an interrupted bench resumes from here
        if "skipped" in row:
            log(f"d{depth} {init}: skipped ({row['skipped']})")
        else:
            log(f"d{depth} {init} @{epochs}ep lr {row['lr']:g}: top-1 {row['top1']:.4f} ({row['wall_seconds']:.0f} s)")
    report = summarize(cfg, arch, rows, learn_rows, ancestor, ancestor_top1, data, started)
    _write_json(results_path, report)
    (out / "results.md").write_text(markdown(report))
    plot(report, out / "accuracy_vs_depth.png")
    return report


def run_row(cfg, init, depth, epochs, arch, genes, ancestor_state, dataset, val, view, log) -> dict:
    row = {"depth": depth, "width": arch.embed_dim, "init": init, "epochs": epochs}
    try:
        model = build_init(init, depth, arch, genes, ancestor_state)
    except InputError as e:
        return {**row, "skipped": str(e)}
    row["params"] = sum(p.numel() for p in model.parameters())
    row["top1_at_init"] = evaluate(model, dataset.test, view)
    inherited = init != "scratch"
    grid = cfg.lr_grid or [cfg.finetune_lr if inherited else cfg.scratch_lr]
    best = None
    for lr in grid:
        trial = copy.deepcopy(model)
        t0 = time.perf_counter()
        tcfg = TrainConfig(
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=lr,
            kd="none",
            seed=cfg.seed,
            warmup_epochs=0.0 if inherited else 0.2,
            log_every=10**9,
        )
        held_out = copy.copy(dataset)
        held_out.test = val if val is not None else dataset.test
        summary = fit(trial, held_out, view, tcfg, identity={})
        score = summary["top1"] if val is not None else 0.0
        if best is None or score > best[0]:
            best = (score, lr, trial, summary, time.perf_counter() - t0)
    score, lr, trial, summary, seconds = best
    return {
        **row,
        "lr": lr,
        "lr_from": "grid (validation split)" if cfg.lr_grid else ("fine-tune rate" if inherited else "scratch rate"),
        "val_top1": score if val is not None else None,
        # without a grid, fit() already evaluated the last epoch on the test split
        "top1": evaluate(trial, dataset.test, view) if val is not None else summary["top1"],
        "train_images": summary["images_seen"],
        "wall_seconds": round(seconds, 2),
    }


def summarize(cfg, arch, rows, learn_rows, ancestor, ancestor_top1, data, started) -> dict:
    done = list(rows.values())
    family = sum(arch.model_copy(update={"depth": d}).num_params() for d in cfg.depths)
    storage = {m: round(family / r["params"], 2) for m, r in learn_rows.items() if r.get("params")}
    return {
        "data": data,
        "ancestor": ancestor,
        "ancestor_top1": ancestor_top1,
        "config": asdict(cfg),
        "learngenes": learn_rows,
        "storage_ratio": storage,
        "family_params": family,
        "training_cost": training_cost(cfg, done, learn_rows),
        "rows": sorted(done, key=_row_order),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _row_order(r):
    return (r["depth"], INITS.index(r["init"]), r["epochs"])


def training_cost(cfg, rows, learn_rows) -> dict:
    """Per learngene: scratch epochs that match its `epochs`-epoch fine-tune at each depth, and the ratio of
    images processed (every matching scratch run) / (learning the gene once + every fine-tune)."""
    scratch = {}
    for r in rows:
        if r["init"] == "scratch" and "top1" in r:
            scratch.setdefault(r["depth"], []).append((r["epochs"], r["top1"], r["train_images"]))
    out = {}
    for method, info in learn_rows.items():
        match, scratch_images, gene_images = {}, 0, info.get("images") or 0
        for r in rows:
            if r["init"] != method or "top1" not in r or r["epochs"] != cfg.epochs:
                continue
            gene_images += r["train_images"]
            curve = sorted(scratch.get(r["depth"], []))
            hit = next(((e, imgs) for e, top1, imgs in curve if top1 >= r["top1"]), None)
            match[r["depth"]] = hit[0] if hit else f">{curve[-1][0]}" if curve else None
            scratch_images += hit[1] if hit else (curve[-1][2] if curve else 0)
        ratio = round(scratch_images / gene_images, 2) if gene_images and info.get("images") else None
        out[method] = {
            "scratch_epochs_to_match": match,
            "ratio": ratio,
            "exact": all(isinstance(v, int) for v in match.values()),
        }
    return out


def _write_json(path: Path, report: dict) -> None:
    from lgtool.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def markdown(report: dict) -> str:
    cfg = report["config"]
    inits = [i for i in INITS if i in cfg["inits"]]
    lines = [
        f"Top-1 on the held-out split after {cfg['epochs']} fine-tune epoch(s); in brackets: before fine-tuning. "
        f"Ancestor: {report['ancestor_top1']:.4f}.",
        "",
        "| depth | params | "
        + " | ".join(inits)
        + " | "
        + " | ".join(f"scratch @{e}ep" for e in cfg["scratch_epochs"] if e != cfg["epochs"])
        + " |",
    ]
    lines.append("|---" * (2 + len(inits) + len([e for e in cfg["scratch_epochs"] if e != cfg["epochs"]])) + "|")
    by_key = {(r["depth"], r["init"], r["epochs"]): r for r in report["rows"]}
    for d in cfg["depths"]:
        cells, params = [], ""
        for i in inits:
            r = by_key.get((d, i, cfg["epochs"]))
            if r is None or "top1" not in r:
                cells.append("skipped" if r else "")
                continue
            params = params or f"{r['params'] / 1e6:.2f}M"
            cells.append(f"**{r['top1']:.4f}** ({r['top1_at_init']:.3f})")
        for e in cfg["scratch_epochs"]:
            if e != cfg["epochs"]:
                r = by_key.get((d, "scratch", e))
                cells.append(f"{r['top1']:.4f}" if r and "top1" in r else "")
        lines.append(f"| {d} | {params} | " + " | ".join(cells) + " |")
    lrs = sorted({(r["init"], r["lr"], r["lr_from"]) for r in report["rows"] if "lr" in r})
    lines += ["", "Learning rates: " + "; ".join(f"{i} {lr:g} ({src})" for i, lr, src in lrs), ""]
    for m, s in report["storage_ratio"].items():
        cost = report["training_cost"].get(m, {})
        lines.append(
            f"- **{m}**: learngene {report['learngenes'][m]['params']:,} parameters, storage ratio {s}× "
            f"(family {report['family_params']:,}); scratch epochs to match per depth "
            f"{cost.get('scratch_epochs_to_match')}; training-cost ratio {cost.get('ratio')}×"
        )
    skipped = [r for r in report["rows"] if "skipped" in r]
    lines += [f"- skipped: depth {r['depth']} {r['init']}: {r['skipped']}" for r in skipped]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    series = [(i, cfg["epochs"]) for i in INITS if i in cfg["inits"]]
    series += [("scratch", e) for e in cfg["scratch_epochs"] if e != cfg["epochs"] and "scratch" in cfg["inits"]]
    for init, epochs in series:
        pts = sorted(
            (r["depth"], r["top1"])
            for r in report["rows"]
            if r["init"] == init and r["epochs"] == epochs and "top1" in r
        )
        if pts:
            style = "--" if init == "scratch" and epochs != cfg["epochs"] else "-"
            ax.plot(*zip(*pts, strict=True), style, marker="o", label=f"{init} @{epochs}ep")
    ax.axhline(report["ancestor_top1"], color="gray", lw=0.8, ls=":", label="ancestor")
    ax.set_xlabel("depth")
    ax.set_ylabel("held-out top-1")
    ax.set_title(f"{Path(str(report['data'])).name}: accuracy vs depth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    from lgtool.atomic import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
