"""`lgtool bench`: does a learngene family pay off against what a practitioner holding the ancestor would try?

For every size (depths at the family width, and more widths where asked) and every init, build the
Desc-Net, fine-tune it for `epochs`, and evaluate on the held-out split:
- sws, tleg, wave: expanded from a learngene distilled once from the ancestor (WAVE first calibrates the
  scalers of every size other than its Aux size, templates frozen, as the paper prescribes);
- scratch: timm's init at a from-scratch rate; kd-scratch: the same, distilled from the ancestor with the
  loss `learn` uses; weight-selection(+kd): cut from the ancestor's own weights (optionally distilled).
Then scratch keeps training, at 2, 4, 8, ... epochs, until it matches the best learngene at that size or
stops improving: that is what the learngene route saves (`bench_report.training_cost`). Learning rates are
per init, or picked from `lr_grid` on a validation split carved from the training data, never the test split.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError

from lgtool.arch import HEAD_DIM, MAX_EMBED_DIM, Arch, build_vit, first_error, parse_width
from lgtool.bench_report import INITS, LEARNGENES, size_arch
from lgtool.errors import InputError, UsageError
from lgtool.rules import RULES
from lgtool.train import TrainConfig, evaluate, fit

FROM_SCRATCH = ("scratch", "kd-scratch")  # timm init: trained at the from-scratch rate
DISTILLED = ("kd-scratch", "weight-selection+kd")  # the ancestor teaches while they train
DEFAULT_ANCESTORS = {"fashion-mnist": "fmnist-vit"}  # shipped, already trained: the bench never trains one
SCHEMA = "lgtool-bench/2"


@dataclass
class BenchConfig:
    depths: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    width: str | int = 64  # the family's width, and the learngenes' Aux width
    num_heads: int | None = None  # at `width` (default: the ancestor's head count); other widths keep the head dim
    widths: list[int] = field(default_factory=list)  # more widths (only WAVE changes width)
    width_depths: list[int] | None = None  # depths at which `widths` run (default: all depths)
    inits: list[str] = field(default_factory=lambda: list(INITS))
    epochs: int = 1  # fine-tune budget of every init
    learn_epochs: int = 3
    learn_init: str = "ancestor"  # learngenes seeded from the ancestor's layers, or "official"
    scratch_max_epochs: int = 8  # the scratch curve doubles its epochs up to this
    min_gain: float = 0.001  # the curve stops when doubling the epochs gains less than this
    lr_grid: list[float] | None = None
    finetune_lr: float = 5e-4  # inherited weights
    scratch_lr: float = 2e-3  # timm init
    learn_lr: float = 1e-3
    batch_size: int = 128
    train_samples: int | None = 10_000
    aux_depth: int = 8
    # Each learngene's rule takes the options it knows (SWS: stages, WAVE: template size).
    rule_options: dict = field(default_factory=lambda: {"stages": [2, 2, 2, 2], "template_size": 32})
    calibrate_steps: int = 200
    calibrate_samples: int = 2000
    calibrate_lr: float = 1e-2
    seed: int = 0

    def __post_init__(self):
        """Every setting in its range, as a one-line UsageError naming its flag, before anything is loaded."""
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            raise UsageError(f"unknown init {unknown[0]!r}: choose from {', '.join(INITS)}")
        if not self.inits:
            raise UsageError(f"--inits names no init: choose from {', '.join(INITS)}")
        if not self.depths or min(self.depths) < 1:
            raise UsageError("--depths takes positive integers, e.g. 2,4,6,8")
        if min(self.widths, default=1) < 1:
            raise UsageError("--widths takes positive integers, e.g. 96,128")
        if self.width_depths is not None and (not self.width_depths or min(self.width_depths) < 1):
            raise UsageError("--width-depths takes positive integers, e.g. 4,8")
        if self.learn_init not in ("ancestor", "official"):
            raise UsageError(f"unknown --learn-init {self.learn_init!r}: choose ancestor or official")
        if self.epochs < 1 or self.scratch_max_epochs < 1 or self.learn_epochs < 1:
            raise UsageError("--epochs, --learn-epochs and --scratch-max-epochs must be at least 1")
        if self.num_heads is not None and self.num_heads < 1:
            raise UsageError(f"--num-heads must be at least 1, got {self.num_heads}")
        try:  # the width's spelling, and with --num-heads whether they divide it; the ancestor's heads come later
            dim = parse_width(self.width, self.num_heads or 1)[0]
        except InputError as e:
            raise UsageError(f"--width: {e}") from None
        if dim > MAX_EMBED_DIM:
            raise UsageError(f"--width must be at most {MAX_EMBED_DIM}, got {dim}")
        if self.train_samples is not None and self.train_samples < 1:
            raise UsageError(f"--train-samples must be at least 1, got {self.train_samples}")
        if self.train_samples is not None and self.train_samples < self.batch_size:
            raise UsageError(
                f"--train-samples {self.train_samples} is fewer than one batch of the bench ({self.batch_size} images)"
            )
        if self.lr_grid is not None and (not self.lr_grid or not all(_positive(lr) for lr in self.lr_grid)):
            raise UsageError("--lr-grid takes positive finite learning rates, e.g. 2e-4,5e-4,2e-3")
        if self.seed < 0:
            raise UsageError(f"--seed must be at least 0, got {self.seed}")
        # Library-only settings (no flag): named as fields.
        for name in ("finetune_lr", "scratch_lr", "learn_lr", "calibrate_lr"):
            if not _positive(getattr(self, name)):
                raise UsageError(f"BenchConfig.{name} must be a positive finite number, got {getattr(self, name)}")
        for name in ("batch_size", "aux_depth", "calibrate_steps", "calibrate_samples"):
            if getattr(self, name) < 1:
                raise UsageError(f"BenchConfig.{name} must be at least 1, got {getattr(self, name)}")
        if not math.isfinite(self.min_gain):
            raise UsageError(f"BenchConfig.min_gain must be a finite number, got {self.min_gain}")

    def sizes(self) -> list[tuple[int, int]]:
        """(depth, width) of every Desc-Net benched: all depths at the family width, then the other widths."""
        base = parse_width(self.width, 1)[0]
        extra = [(d, w) for w in self.widths if w != base for d in (self.width_depths or self.depths)]
        return [(d, base) for d in self.depths] + extra

    def curve_epochs(self) -> list[int]:
        """The longer scratch budgets: `epochs` doubled until `scratch_max_epochs`."""
        out, e = [], self.epochs * 2
        while e <= self.scratch_max_epochs:
            out.append(e)
            e *= 2
        return out


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
    from lgtool.ancestor import ancestor_heads, ancestor_view, load_ancestor, resolve_ancestor
    from lgtool.bench_report import ancestor_cost, markdown, plot_accuracy, plot_time_to_accuracy, summarize
    from lgtool.data import balanced_subset, load_data
    from lgtool.learngene import load_learngene

    out = Path(out)
    started = time.perf_counter()
    say = log

    def log(msg):
        say(f"[{time.perf_counter() - started:5.0f}s] {msg}")

    ancestor = ancestor or DEFAULT_ANCESTORS.get(data)
    if ancestor is None:
        raise UsageError(f"--ancestor is required for --data {data} (a trained model on these labels)")
    # Everything is validated before OUT is created: the cheap checks first, then data and ancestor are loaded.
    results_path = out / "results.json"
    if results_path.is_file() and not resume:
        raise InputError(f"{out} already holds a bench; pass --resume to continue it or choose another -o")
    previous = _previous(results_path) if resume and results_path.is_file() else {}
    if previous and previous.get("schema") != SCHEMA:
        raise InputError(f"{results_path} was written by another lgtool bench version; choose another -o")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; choose another -o")
    resolve_ancestor(ancestor)
    given = {load_learngene(p).method: p for p in learngenes}  # header, tensors and finiteness, before data
    _check_family(cfg, ancestor, ancestor_heads(ancestor), given)  # a folder ancestor declares its heads

    dataset = load_data(data, data_dir, cfg.train_samples, seed=cfg.seed)
    val = None
    if cfg.lr_grid:  # carve a validation split from the training data for choosing learning rates
        held = balanced_subset(dataset.train.labels, max(dataset.num_classes, len(dataset.train) // 10), cfg.seed + 1)
        keep = torch.ones(len(dataset.train), dtype=torch.bool)
        keep[held] = False
        val, dataset.train = dataset.train.subset(held), dataset.train.subset(keep.nonzero().squeeze(1))
    if len(dataset.train) < cfg.batch_size:
        split = " (after the --lr-grid validation split)" if val is not None else ""
        raise InputError(
            f"--data {data}: {len(dataset.train)} training images{split}, fewer than one batch of the bench "
            f"({cfg.batch_size} images)"
        )
    teacher = load_ancestor(ancestor, num_classes=dataset.num_classes)
    if not (hasattr(teacher, "blocks") and hasattr(teacher, "patch_embed")):
        raise InputError(f"--ancestor {ancestor} is not a ViT; the bench seeds learngenes from a ViT's blocks")
    view = ancestor_view(teacher, dataset.view)
    # The ancestor's head count by default: narrowing it by evenly spaced selection then halves every head
    # rather than merging heads, for seeded learngenes and weight selection alike.
    teacher_heads = getattr(teacher.blocks[0].attn, "num_heads", None)
    teacher_heads = teacher_heads or max(1, parse_width(cfg.width, 1)[0] // HEAD_DIM)  # a ViT that does not say
    embed_dim, heads = _check_family(cfg, ancestor, teacher_heads, given)
    arch = Arch(
        img_size=view.img_size,
        patch_size=teacher.patch_embed.patch_size[0],
        in_chans=view.in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        depth=cfg.aux_depth,
        num_classes=dataset.num_classes,
    )
    out.mkdir(parents=True, exist_ok=True)
    if any(m in LEARNGENES and m not in given for m in cfg.inits):
        (out / "learngenes").mkdir(exist_ok=True)  # learn() writes there and wants the folder to exist
    ancestor_top1 = previous.get("ancestor", {}).get("top1") or evaluate(teacher, dataset.test, view)
    log(f"ancestor {ancestor}: held-out top-1 {ancestor_top1:.4f}")
    bench = Bench(cfg, arch, dataset, val, view, teacher, log)
    genes, learn_rows = bench.learngenes(ancestor, data, data_dir, out, learngenes, previous, resume)
    anc = {"name": ancestor, "top1": ancestor_top1, **ancestor_cost(ancestor)}

    rows = {_key(r): r for r in previous.get("rows", [])}

    def record(row):
        rows[_key(row)] = row
        report = summarize(cfg, arch, rows.values(), learn_rows, anc, data, started)
        _write_json(results_path, report)  # after every row: an interrupted bench resumes from here
        if "skipped" in row:
            log(f"d{row['depth']} w{row['width']} {row['init']}: skipped ({row['skipped']})")
        else:
            log(
                f"d{row['depth']} w{row['width']} {row['init']} @{row['epochs']}ep lr {row['lr']:g}: "
                f"top-1 {row['top1']:.4f} ({row['wall_seconds']:.0f} s)"
            )

    for depth, width in cfg.sizes():
        for init in cfg.inits:
            if (depth, width, init, cfg.epochs) not in rows:
                record(bench.row(init, depth, width, cfg.epochs, genes))
    if "scratch" in cfg.inits:
        for depth, width in cfg.sizes():
            bench.scratch_curve(depth, width, rows, record)

    report = summarize(cfg, arch, rows.values(), learn_rows, anc, data, started)
    _write_json(results_path, report)
    from lgtool.atomic import atomic_file

    with atomic_file(out / "results.md") as tmp:
        tmp.write_text(markdown(report))
    plot_accuracy(report, out / "accuracy_vs_depth.png")
    plot_time_to_accuracy(report, out / "time_to_accuracy.png")
    return report


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def _previous(results_path: Path) -> dict:
    """The results.json of the bench being resumed."""
    try:
        previous = json.loads(results_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{results_path}: cannot resume from it ({type(e).__name__}); choose another -o") from None
    if not isinstance(previous, dict):
        raise InputError(f"{results_path}: cannot resume from it (not a JSON object); choose another -o")
    return previous


def _check_family(cfg: BenchConfig, ancestor: str, ancestor_num_heads: int | None, given: dict) -> tuple[int, int]:
    """The family's (width, heads): --num-heads, else the ancestor's head count. A UsageError if --width does not
    divide into those heads, or cannot hold a learngene the bench would learn (not `given` ones). With no
    --num-heads and `ancestor_num_heads` None (not known before the ancestor is loaded), heads are None."""
    embed_dim = parse_width(cfg.width, cfg.num_heads or 1)[0]  # its spelling is checked by BenchConfig
    heads = cfg.num_heads or ancestor_num_heads
    if heads is None:
        return embed_dim, None
    if embed_dim % heads:
        raise UsageError(
            f"--width {embed_dim} is not divisible by the {heads} attention heads of --ancestor {ancestor}: "
            f"use a multiple of {heads}, or --num-heads with a head count that divides {embed_dim}"
        )
    aux = Arch(embed_dim=embed_dim, num_heads=heads, depth=cfg.aux_depth)  # what learn() makes, at any image size
    for method in [i for i in cfg.inits if i in LEARNGENES and i not in given]:
        rules = RULES[method]
        options = {k: v for k, v in cfg.rule_options.items() if k in rules.OPTIONS}
        try:
            rule, depth = rules.make_rule(options, cfg.aux_depth, embed_dim // heads)
            rules.check_aux(rule, aux.model_copy(update={"depth": depth}))
        except (ValueError, UsageError) as e:
            why = first_error(e) if isinstance(e, ValidationError) else str(e)
            raise UsageError(
                f"--width {embed_dim} with {heads} head{'s' if heads > 1 else ''} (head dim {embed_dim // heads}) "
                f"cannot hold the bench's {method.upper()} learngene: {why}; choose another --width or leave "
                f"{method} out of --inits"
            ) from None
    return embed_dim, heads


def _key(row: dict) -> tuple:
    return row["depth"], row["width"], row["init"], row["epochs"]


@dataclass
class Bench:
    """What every row of one bench shares: settings, family architecture, data, ancestor."""

    cfg: BenchConfig
    arch: Arch
    dataset: object
    val: object  # a validation split carved from train (with --lr-grid), else None
    view: object
    teacher: torch.nn.Module
    log: object

    def learngenes(self, ancestor, data, data_dir, out, given_paths, previous, resume):
        """Each benched learngene, distilled once (or given), with what learning it cost."""
        from lgtool.learn import learn
        from lgtool.learngene import load_learngene

        cfg = self.cfg
        genes, learn_rows = {}, {}
        given = {load_learngene(p).method: p for p in given_paths}
        for method in [i for i in cfg.inits if i in LEARNGENES]:
            path = Path(given.get(method) or out / "learngenes" / f"{method}.safetensors")
            if not path.is_file():
                self.log(f"learn {method}: {cfg.learn_epochs} epochs of distillation, init {cfg.learn_init}")
                options = {k: v for k, v in cfg.rule_options.items() if k in RULES[method].OPTIONS}
                t0 = time.perf_counter()
                path.parent.mkdir(parents=True, exist_ok=True)
                checkpoint = path.with_suffix(".ckpt")
                r = learn(
                    ancestor,
                    method,
                    data,
                    path,
                    evaluate_ancestor=False,
                    resume=checkpoint if resume and checkpoint.is_file() else None,
                    data_dir=data_dir,
                    width=self.arch.embed_dim,
                    num_heads=self.arch.num_heads,
                    aux_depth=cfg.aux_depth,
                    train_samples=cfg.train_samples,
                    init=cfg.learn_init,
                    cfg=TrainConfig(
                        epochs=cfg.learn_epochs,
                        batch_size=cfg.batch_size,
                        lr=cfg.learn_lr,
                        warmup_epochs=0.2,
                        seed=cfg.seed,
                    ),
                    log=_reporter(self.log, f"learn {method}"),
                    **options,
                )
                learn_rows[method] = {
                    "aux_top1": r["aux_top1"],
                    "images": r["images_seen"],
                    "teacher_images": r["images_seen"],  # the teacher sees every image the Aux-Net trains on
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            genes[method] = load_learngene(path)
            learn_rows.setdefault(method, previous.get("learngenes", {}).get(method, {"images": None}))
            prov = genes[method].meta.provenance  # a given learngene: its cost from what `learn` recorded
            if learn_rows[method].get("images") is None and prov.get("steps") and prov.get("batch_size"):
                learn_rows[method]["images"] = learn_rows[method]["teacher_images"] = prov["steps"] * prov["batch_size"]
            learn_rows[method].update(path=str(path), params=genes[method].num_params(), init=prov.get("init"))
        return genes, learn_rows

    def initial_model(self, init: str, depth: int, width: int, genes: dict) -> tuple[torch.nn.Module, int]:
        """The Desc-Net of one row before fine-tuning, and the images spent making it (WAVE calibration).
        InputError says why an init cannot make this size."""
        from lgtool.baselines import weight_selection
        from lgtool.materialize import expand, target_arch

        torch.manual_seed(depth * 1000 + width)  # fresh heads and scratch weights: the same in every run
        target = size_arch(self.arch, depth, width)
        if init in LEARNGENES:
            gene, spent = genes[init], 0
            size = target_arch(gene, depth, width, target.num_classes)
            if RULES[init].SIZE_SPECIFIC and (depth, width) != (gene.arch.depth, gene.arch.embed_dim):
                gene, spent = self.calibrate(gene, size)
            return expand(gene, size), spent
        model = build_vit(target)
        if init.startswith("weight-selection"):
            weight_selection(self.teacher.state_dict(), model)
        return model, 0

    def calibrate(self, gene, target: Arch):
        """A new size's own tensors (WAVE's scalers) learned on a few training images, templates frozen."""
        from lgtool.data import balanced_subset
        from lgtool.learn import calibrate

        cfg = self.cfg
        data = copy.copy(self.dataset)
        data.train = data.train.subset(balanced_subset(data.train.labels, cfg.calibrate_samples, cfg.seed + 2))
        calibrated, info = calibrate(  # the row measures the calibrated model itself: skip the "before" pass
            gene,
            target,
            dataset=data,
            steps=cfg.calibrate_steps,
            lr=cfg.calibrate_lr,
            seed=cfg.seed,
            measure_before=False,
        )
        return calibrated, info["images"]

    def row(self, init: str, depth: int, width: int, epochs: int, genes: dict) -> dict:
        cfg = self.cfg
        row = {"depth": depth, "width": width, "init": init, "epochs": epochs}
        t0 = time.perf_counter()
        try:
            model, calibration_images = self.initial_model(init, depth, width, genes)
        except InputError as e:
            return {**row, "skipped": str(e)}
        row["params"] = sum(p.numel() for p in model.parameters())
        row["calibration_images"] = calibration_images
        row["top1_at_init"] = evaluate(model, self.dataset.test, self.view)
        scratch = init in FROM_SCRATCH
        teacher = self.teacher if init in DISTILLED else None
        grid = cfg.lr_grid or [cfg.scratch_lr if scratch else cfg.finetune_lr]
        best = None
        for lr in grid:
            trial = copy.deepcopy(model)
            # with a teacher: soft KD at TrainConfig's alpha, tau and reduction, as the learngenes' learn
            tcfg = TrainConfig(
                epochs=epochs,
                batch_size=cfg.batch_size,
                lr=lr,
                kd="none" if teacher is None else "soft",
                seed=cfg.seed,
                warmup_epochs=0.2 if scratch else 0.0,
                log_every=10**9,
            )
            held_out = copy.copy(self.dataset)
            held_out.test = self.val if self.val is not None else self.dataset.test
            summary = fit(trial, held_out, self.view, tcfg, identity={}, teacher=teacher)
            score = summary["top1"] if self.val is not None else 0.0
            if best is None or score > best[0]:
                best = (score, lr, trial, summary)
        score, lr, trial, summary = best
        return {
            **row,
            "lr": lr,
            "lr_from": "grid (validation split)" if cfg.lr_grid else ("scratch rate" if scratch else "fine-tune rate"),
            "val_top1": score if self.val is not None else None,
            # without a grid, fit() already evaluated the last epoch on the test split
            "top1": evaluate(trial, self.dataset.test, self.view) if self.val is not None else summary["top1"],
            "train_images": summary["images_seen"],
            "teacher_images": summary["images_seen"] if teacher is not None else 0,
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }

    def scratch_curve(self, depth: int, width: int, rows: dict, record) -> None:
        """Scratch at 2, 4, 8, ... x the budget until it matches the best learngene here or stops improving."""
        genes = [rows.get((depth, width, m, self.cfg.epochs), {}).get("top1") for m in LEARNGENES]
        target = max((t for t in genes if t is not None), default=None)
        last = rows.get((depth, width, "scratch", self.cfg.epochs), {}).get("top1")
        for epochs in self.cfg.curve_epochs():
            if last is None or (target is not None and last >= target):
                return
            row = rows.get((depth, width, "scratch", epochs)) or self.row("scratch", depth, width, epochs, {})
            if (depth, width, "scratch", epochs) not in rows:
                record(row)
            gain, last = row["top1"] - last, row["top1"]
            if gain < self.cfg.min_gain:
                return


def _reporter(log, what):
    def report(**e):
        if "epoch_end" in e:
            log(f"{what}: epoch {e['epoch_end']}/{e['epochs']} held-out top-1 {e['top1']:.4f}")

    return report


def _write_json(path: Path, report: dict) -> None:
    from lgtool.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
