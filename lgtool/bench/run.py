"""`lgtool bench`: is a learngene the cheapest way to a family of sizes, against the best alternative?

For every size (depths at the family width, and more widths where asked):
- sws, tleg, wave: expanded from a learngene distilled once from the ancestor (WAVE first calibrates the
  scalers of every size other than its Aux size, templates frozen), then fine-tuned for `epochs` (0: as
  expanded);
- the alternatives a practitioner holding the ancestor would try: scratch and kd-scratch (timm's init, the
  second distilled from the ancestor with the loss `learn` uses), weight-selection(+kd) (cut from the
  ancestor's own weights, head kept when the labels match). Each doubles its epochs until it matches the
  best learngene there or gains less than `min_gain`, up to `max_epochs`.
Every init picks its learning rate, warmup (and weight selection its layer policy) on a validation split
carved from the training data; the test split only produces the reported numbers. What the routes cost,
in FLOPs and images, and which is cheapest per size, is `bench_cost`'s business.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lgtool.format.arch import HEAD_DIM, MAX_EMBED_DIM, Arch, build_vit, default_patch_size, first_error, parse_width
from lgtool.training.baselines import LAYER_POLICIES
from lgtool.bench.cost import (
    ALTERNATIVES,
    DISTILLED,
    INITS,
    LEARNGENES,
    forward_flops,
    row_flops,
    size_arch,
    size_name,
)
from lgtool.training.settings import COMMAND_DEFAULTS
from lgtool.format.errors import InputError, UsageError
from lgtool.rules import RULES
from lgtool.training.loop import TrainConfig, evaluate, fit

# The cheaper alternatives first: once one matches, a dearer one stops at its first budget (`Bench.curve`).
# Inits that start from the same weights at a size (same seed, same cut): their top-1 at 0 epochs is measured once.
SAME_START = {"kd-scratch": "scratch", "weight-selection+kd": "weight-selection"}
CURVE_ORDER = ("weight-selection", "scratch", "weight-selection+kd", "kd-scratch")
DEFAULT_ANCESTORS = {"fashion-mnist": "fmnist-vit"}  # shipped, already trained: the bench never trains one
SCHEMA = "lgtool-bench/3"


@dataclass
class BenchConfig:
    depths: list[int] = field(default_factory=lambda: [2, 6, 12])
    width: str | int = 64  # the family's width, and the learngenes' Aux width
    num_heads: int | None = None  # at `width` (default: the ancestor's head count); other widths keep the head dim
    widths: list[int] = field(default_factory=list)  # more widths
    width_depths: list[int] | None = None  # depths at which `widths` run (default: all depths)
    inits: list[str] = field(default_factory=lambda: list(INITS))
    epochs: int = 1  # fine-tune budget of every learngene (0: as expanded); the alternatives' first budget
    learn_epochs: int = 3
    learn_init: str = "ancestor"  # learngenes seeded from the ancestor's layers (a ViT's), or "official"
    learn_family: bool = False  # distil each learngene for the benched sizes at once (`lgtool.family`)
    max_epochs: int = 4  # the alternatives double their epochs up to this
    min_gain: float = 0.001  # a curve stops when doubling the epochs gains less than this (validation top-1)
    lr_grid: list[float] = field(default_factory=lambda: [5e-4, 2e-3])  # every init picks from it on validation
    warmup_grid: list[float] = field(default_factory=lambda: [0.2])  # warmup epochs, likewise
    val_fraction: float = 0.1  # of the training images, held out for every choice the bench makes
    learn_lr: float = COMMAND_DEFAULTS["learn"]["lr"]  # learn's own default, chosen on validation
    batch_size: int = 128
    train_samples: int | None = 5_000
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
        if self.epochs < 0:
            raise UsageError(f"--epochs must be at least 0 (0: the family as expanded), got {self.epochs}")
        if self.max_epochs < 1 or self.learn_epochs < 1:
            raise UsageError("--learn-epochs and --max-epochs must be at least 1")
        if self.num_heads is not None and self.num_heads < 1:
            raise UsageError(f"--num-heads must be at least 1, got {self.num_heads}")
        try:  # the width's spelling, and with --num-heads whether they divide it; the ancestor's heads come later
            dim = parse_width(self.width, self.num_heads or 1)[0]
        except InputError as e:
            raise UsageError(f"--width: {e}") from None
        if dim > MAX_EMBED_DIM:
            raise UsageError(f"--width must be at most {MAX_EMBED_DIM}, got {dim}")
        if not (_positive(self.val_fraction) and self.val_fraction < 1):
            raise UsageError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if self.train_samples is not None and self.train_samples < 1:
            raise UsageError(f"--train-samples must be at least 1, got {self.train_samples}")
        if self.train_samples is not None and self.train_samples * (1 - self.val_fraction) < self.batch_size:
            raise UsageError(
                f"--train-samples {self.train_samples} leaves fewer than one batch of the bench ({self.batch_size} "
                "images) once the validation split is held out"
            )
        if not self.lr_grid or not all(_positive(lr) for lr in self.lr_grid):
            raise UsageError("--lr-grid takes positive finite learning rates, e.g. 5e-4,2e-3")
        if not self.warmup_grid or not all(_positive(w) or w == 0 for w in self.warmup_grid):
            raise UsageError("--warmup-grid takes warmup epochs at least 0, e.g. 0,0.2")
        if self.seed < 0:
            raise UsageError(f"--seed must be at least 0, got {self.seed}")
        # Library-only settings (no flag): named as fields.
        for name in ("learn_lr", "calibrate_lr"):
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
        """The alternatives' budgets: the fine-tune budget (at least 1), doubled until `max_epochs`."""
        out, e = [], max(1, self.epochs)
        while e <= max(self.max_epochs, max(1, self.epochs)):
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
    from lgtool.training.ancestor import ancestor_heads, ancestor_view, is_vit, load_ancestor, resolve_ancestor
    from lgtool.bench.report import write_report
    from lgtool.training.data import load_data
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
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; choose another -o")
    resolve_ancestor(ancestor)
    given = {load_learngene(p).method: p for p in learngenes}  # header, tensors and finiteness, before data
    _check_family(cfg, ancestor, ancestor_heads(ancestor), given)  # a folder ancestor declares its heads

    dataset = load_data(data, data_dir, cfg.train_samples, seed=cfg.seed)
    if len(dataset.train) * (1 - cfg.val_fraction) < cfg.batch_size + dataset.num_classes:
        raise InputError(
            f"--data {data}: {len(dataset.train)} training images, fewer than one batch of the bench "
            f"({cfg.batch_size} images) once the validation split ({cfg.val_fraction:.0%}) is held out"
        )
    # Every choice (rates, warmup, layer policy, when a curve has matched) is made on this split.
    tuning = dataset.held_out(cfg.val_fraction, cfg.seed + 1)
    teacher = load_ancestor(ancestor, num_classes=dataset.num_classes)
    vit_ancestor = is_vit(teacher)
    view = ancestor_view(teacher, dataset.view)
    # The ancestor's head count by default: narrowing it by evenly spaced selection then halves every head
    # rather than merging heads, for seeded learngenes and weight selection alike.
    teacher_heads = getattr(teacher.blocks[0].attn, "num_heads", None) if vit_ancestor else None
    teacher_heads = teacher_heads or max(1, parse_width(cfg.width, 1)[0] // HEAD_DIM)
    embed_dim, heads = _check_family(cfg, ancestor, teacher_heads, given)
    arch = Arch(
        img_size=view.img_size,
        patch_size=teacher.patch_embed.patch_size[0] if vit_ancestor else default_patch_size(view.img_size),
        in_chans=view.in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        depth=cfg.aux_depth,
        num_classes=dataset.num_classes,
    )
    out.mkdir(parents=True, exist_ok=True)
    if any(m in LEARNGENES and m not in given for m in cfg.inits):
        (out / "learngenes").mkdir(exist_ok=True)  # learn() writes there and wants the folder to exist
    known_top1 = previous.get("ancestor", {}).get("top1")
    ancestor_top1 = known_top1 if _is_share(known_top1) else evaluate(teacher, dataset.test, view)
    log(f"ancestor {ancestor}: test top-1 {ancestor_top1:.4f}")
    bench = Bench(cfg, arch, tuning, dataset.test, view, teacher, vit_ancestor, log)
    genes, learn_rows = bench.learngenes(ancestor, out, learngenes, previous, resume)
    flops = bench.flops()
    anc = {"name": ancestor, "top1": ancestor_top1, "vit": vit_ancestor, **_ancestor_cost(ancestor)}
    rows = {_key(r): r for r in previous.get("rows", [])}

    def report():
        return {
            "schema": SCHEMA,
            "data": data,
            "ancestor": anc,
            "arch": arch.model_dump(),
            "val_images": len(tuning.test),
            "train_images": len(tuning.train),
            "flops": flops,
            "learngenes": learn_rows,
            "rows": list(rows.values()),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }

    def record(row):
        rows[_key(row)] = row
        _write_json(results_path, report())  # after every row: an interrupted bench resumes from here
        if "skipped" in row:
            log(f"d{row['depth']} w{row['width']} {row['init']}: skipped ({row['skipped']})")
        else:
            how = f" lr {row['lr']:g}" if "lr" in row else ""
            log(
                f"d{row['depth']} w{row['width']} {row['init']} @{row['epochs']}ep{how}: val {row['val_top1']:.4f} "
                f"test {row['top1']:.4f} ({row['wall_seconds']:.0f} s)"
            )

    for depth, width in cfg.sizes():
        for init in [i for i in cfg.inits if i in LEARNGENES]:
            if (depth, width, init, cfg.epochs) not in rows:
                record(bench.row(init, depth, width, cfg.epochs, genes, rows))
    for depth, width in cfg.sizes():
        for init in [i for i in CURVE_ORDER if i in cfg.inits]:
            bench.curve(init, depth, width, genes, rows, record, flops)
    return write_report(cfg, report(), out)


def _is_share(x) -> bool:
    return isinstance(x, float) and 0 <= x <= 1


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _previous(results_path: Path) -> dict:
    """The results.json of the bench being resumed."""
    try:
        previous = json.loads(results_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{results_path}: cannot resume from it ({type(e).__name__}); choose another -o") from None
    if not isinstance(previous, dict):
        raise InputError(f"{results_path}: cannot resume from it (not a JSON object); choose another -o")
    if previous.get("schema") != SCHEMA:
        raise InputError(f"{results_path} was written by another lgtool bench version; choose another -o")
    try:  # a crafted or damaged file is refused in one line, never half-used
        _Resumed.model_validate(previous)
    except ValidationError as e:
        raise InputError(f"{results_path}: cannot resume from it ({first_error(e)}); choose another -o") from None
    return previous


_Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]


class _Row(BaseModel):
    """What resuming reads of a row: its key and the numbers later rows and the report are built on."""

    model_config = ConfigDict(extra="allow", strict=True)
    depth: Annotated[int, Field(ge=1)]
    width: Annotated[int, Field(ge=1)]
    init: Literal[INITS]
    epochs: _Count
    skipped: str | None = None
    val_top1: _Share | None = None
    val_at_init: _Share | None = None
    top1: _Share | None = None
    top1_at_init: _Share | None = None
    train_images: _Count = 0
    teacher_images: _Count = 0
    calibration_images: _Count = 0
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    warmup_epochs: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    layer_policy: Literal[LAYER_POLICIES] | None = None


class _Learned(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    images: _Count | None = None
    teacher_images: _Count | None = None
    student_images: dict[str, _Count] | None = None


class _Resumed(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    ancestor: dict[str, object] = {}
    learngenes: dict[Literal[LEARNGENES], _Learned] = {}
    rows: list[_Row] = []


def _ancestor_cost(ancestor: str) -> dict:
    """The ancestor's training images as its folder records them (lgtool's training writes them); paid once."""
    from lgtool.training.ancestor import shipped_ancestor

    config = Path(shipped_ancestor(ancestor) or ancestor) / "config.json"
    try:
        tune = json.loads(config.read_text())["lgtool"]["finetune"]
        images = tune["epochs"] * tune["train_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"training_images": None, "paid": "unknown: not trained by lgtool"}
    return {"training_images": images, "paid": "already paid: a pretrained model, trained once for every use"}


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
            rules.check_aux(rule, Arch.checked(aux, depth=depth))
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
    tuning: object  # Data: train = the training images less the validation split, test = the validation split
    test: object  # the test split: reported numbers only
    view: object
    teacher: torch.nn.Module
    vit_ancestor: bool
    log: object
    at_init: dict = field(default_factory=dict)  # (depth, width, start, layer policy) -> top-1 before training

    def learngenes(self, ancestor, out, given_paths, previous, resume):
        """Each benched learngene, distilled once on the tuning split (or given), with what learning it cost."""
        from lgtool.learngene import load_learngene

        genes, learn_rows = {}, {}
        given = {load_learngene(p).method: p for p in given_paths}
        for method in [i for i in self.cfg.inits if i in LEARNGENES]:
            kind = f"{method}-family" if self.cfg.learn_family else method  # never resumed as the other kind
            path = Path(given.get(method) or out / "learngenes" / f"{kind}.safetensors")
            if not path.is_file():
                learn_rows[method] = self.learn(ancestor, method, path, resume)
            genes[method] = load_learngene(path)
            learn_rows.setdefault(method, previous.get("learngenes", {}).get(method, {"images": None}))
            prov = genes[method].meta.provenance  # a given learngene: its cost from what `learn` recorded
            if learn_rows[method].get("images") is None and prov.get("steps") and prov.get("batch_size"):
                learn_rows[method]["images"] = prov["steps"] * prov["batch_size"]
                trained = (prov.get("family") or {}).get("images") if isinstance(prov.get("family"), dict) else None
                if isinstance(trained, dict) and all(type(n) is int and n >= 0 for n in trained.values()):
                    learn_rows[method]["student_images"] = trained
                ran = prov.get("teacher_images")
                learn_rows[method]["teacher_images"] = (
                    ran if type(ran) is int and ran > 0 else learn_rows[method]["images"]
                )
            learn_rows[method].update(path=str(path), params=genes[method].num_params(), init=prov.get("init"))
            learn_rows[method].setdefault("aux_size", size_name(genes[method].arch.depth, genes[method].arch.embed_dim))
        return genes, learn_rows

    def learn(self, ancestor, method: str, path: Path, resume: bool) -> dict:
        from lgtool.training.learn import learn

        cfg = self.cfg
        # A learngene is seeded from the ancestor's blocks only when it has some (a ViT); else the papers' init.
        init = cfg.learn_init if self.vit_ancestor else "official"
        self.log(f"learn {method}: {cfg.learn_epochs} epochs of distillation, init {init}")
        options = {k: v for k, v in cfg.rule_options.items() if k in RULES[method].OPTIONS}
        t0 = time.perf_counter()
        checkpoint = path.with_suffix(".ckpt")
        r = learn(
            ancestor,
            method,
            output=path,
            dataset=self.tuning,
            evaluate_ancestor=False,
            resume=checkpoint if resume and checkpoint.is_file() else None,
            width=self.arch.embed_dim,
            num_heads=self.arch.num_heads,
            aux_depth=cfg.aux_depth,
            patch_size=self.arch.patch_size,
            init=init,
            family=self.family(method, options) if cfg.learn_family else None,
            cfg=TrainConfig.for_command(
                "learn", epochs=cfg.learn_epochs, batch_size=cfg.batch_size, lr=cfg.learn_lr, seed=cfg.seed
            ),
            log=_reporter(self.log, f"learn {method}"),
            **options,
        )
        return {
            "aux_val_top1": r["aux_top1"],
            "images": r["images_seen"],
            # the forwards it ran (repeated inputs come from its cache); unknown after an old checkpoint: all
            "teacher_images": r["images_seen"] if r["teacher_images"] is None else r["teacher_images"],
            "student_images": r["family_images"],  # per size trained, for a family-aware learngene
            "seconds": round(time.perf_counter() - t0, 1),
            "init_why": None if init == cfg.learn_init else "the ancestor is not a ViT: no blocks to seed from",
        }

    def family(self, method: str, options: dict) -> list[tuple[int, int]]:
        """The benched sizes this method's learngene can make (SWS makes no depth below its stage count)."""
        from lgtool.family import makeable
        from lgtool.learngene import init_learngene

        a = self.arch
        probe = init_learngene(method, width=a.embed_dim, num_heads=a.num_heads, aux_depth=self.cfg.aux_depth,
                               img_size=a.img_size, patch_size=a.patch_size, in_chans=a.in_chans,
                               num_classes=a.num_classes, **options)  # fmt: skip
        return makeable(probe, self.cfg.sizes())

    def flops(self) -> dict:
        """Forward FLOPs per image of the teacher and of every size benched (the Aux size included)."""
        sizes = {*self.cfg.sizes(), (self.cfg.aux_depth, self.arch.embed_dim)}
        out = {"teacher": forward_flops(self.teacher, self.view)}
        for depth, width in sorted(sizes):
            out[size_name(depth, width)] = forward_flops(build_vit(size_arch(self.arch, depth, width)), self.view)
        return out

    def initial_model(self, init: str, depth: int, width: int, genes: dict, layers: str | None):
        """The Desc-Net of one row before fine-tuning, the images spent making it (WAVE calibration) and what
        weight selection did. InputError says why an init cannot make this size."""
        from lgtool.training.baselines import weight_selection
        from lgtool.materialize import expand, target_arch

        torch.manual_seed(depth * 1000 + width)  # fresh heads and scratch weights: the same in every run
        target = size_arch(self.arch, depth, width)
        if init in LEARNGENES:
            gene, spent = genes[init], 0
            size = target_arch(gene, depth, width, target.num_classes, num_heads=target.num_heads)
            trained = [(gene.arch.depth, gene.arch.embed_dim), *map(tuple, gene.meta.sizes)]
            if RULES[init].SIZE_SPECIFIC and (depth, width) not in trained:  # a family-aware size needs none
                gene, spent = self.calibrate(gene, size)
            return expand(gene, size), spent, {}
        model = build_vit(target)
        if init.startswith("weight-selection"):
            if not self.vit_ancestor:
                raise InputError("the ancestor is not a ViT: weight selection cuts a ViT's tensors from a ViT's")
            return model, 0, weight_selection(self.teacher.state_dict(), model, layers)
        return model, 0, {}

    def calibrate(self, gene, target: Arch):
        """A new size's own tensors (WAVE's scalers) learned on a few training images, templates frozen."""
        from lgtool.training.data import balanced_subset
        from lgtool.training.learn import calibrate

        cfg = self.cfg
        data = copy.copy(self.tuning)
        data.train = data.train.subset(balanced_subset(data.train.labels, cfg.calibrate_samples, cfg.seed + 2))
        calibrated, info = calibrate(  # the row measures the calibrated model itself: skip the "before" pass
            gene, target, dataset=data, steps=cfg.calibrate_steps, lr=cfg.calibrate_lr, seed=cfg.seed,
            measure_before=False,
        )  # fmt: skip
        return calibrated, info["images"]

    def candidates(self, init: str, depth: int, width: int, epochs: int, rows: dict) -> list[dict]:
        """The settings this row may train with: the grid, or the choice made at this init's first budget here."""
        from lgtool.training.baselines import layer_policies

        first = rows.get((depth, width, init, self.cfg.curve_epochs()[0]))
        if init in ALTERNATIVES and first and "lr" in first and first["epochs"] != epochs:
            return [{k: first[k] for k in ("lr", "warmup_epochs", "layer_policy") if k in first}]
        grid = [{"lr": lr, "warmup_epochs": w} for lr, w in itertools.product(self.cfg.lr_grid, self.cfg.warmup_grid)]
        if init.startswith("weight-selection") and self.vit_ancestor:
            policies = layer_policies(len(self.teacher.blocks), depth)
            grid = [{**g, "layer_policy": p} for p in policies for g in grid]
        return grid

    def row(self, init: str, depth: int, width: int, epochs: int, genes: dict, rows: dict) -> dict:
        row = {"depth": depth, "width": width, "init": init, "epochs": epochs}
        t0 = time.perf_counter()
        starts, best = {}, None  # one initial model per layer policy, copied for every rate
        for choice in self.candidates(init, depth, width, epochs, rows):
            policy = choice.get("layer_policy")
            if policy not in starts:
                try:
                    model, calibration, selection = self.initial_model(init, depth, width, genes, policy)
                except InputError as e:
                    return {**row, "skipped": str(e)}
                known = self.at_init.get((depth, width, SAME_START.get(init, init), policy), {})
                at_init = {"val_at_init": known.get("val_at_init") or evaluate(model, self.tuning.test, self.view)}
                starts[policy] = (model, calibration, selection, at_init)
            model, calibration, selection, at_init = starts[policy]
            if epochs == 0:
                best = (choice, model, {"top1": at_init["val_at_init"], "images_seen": 0})
                break
            trained = copy.deepcopy(model)
            summary = self.train(trained, init, epochs, choice)
            row.setdefault("tried", []).append({**choice, "val_top1": summary["top1"]})
            if best is None or summary["top1"] > best[2]["top1"]:
                best = (choice, trained, summary)
        choice, trained, summary = best
        model, calibration, selection, at_init = starts[choice.get("layer_policy")]
        known = self.at_init.get((depth, width, SAME_START.get(init, init), choice.get("layer_policy")), {})
        result = {
            **row,
            **({} if epochs == 0 else choice),
            **({"layers": selection["layers"], "head": selection["head"]} if selection else {}),
            "params": sum(p.numel() for p in model.parameters()),
            "calibration_images": calibration,
            **at_init,
            "top1_at_init": (at_start := known.get("top1_at_init") or evaluate(model, self.test, self.view)),
            "val_top1": summary["top1"],
            "top1": at_start if epochs == 0 else evaluate(trained, self.test, self.view),
            "train_images": summary["images_seen"],
            "teacher_images": summary.get("teacher_images", 0),  # 0 without a teacher; repeats come from its cache
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
        start = (depth, width, SAME_START.get(init, init), choice.get("layer_policy"))
        self.at_init[start] = {k: result[k] for k in ("val_at_init", "top1_at_init")}
        return result

    def train(self, model, init: str, epochs: int, choice: dict) -> dict:
        """Fine-tune (or train) one row's model with one candidate's settings; evaluated on the validation split."""
        teacher = self.teacher if init in DISTILLED else None
        cfg = TrainConfig(  # with a teacher: soft KD at TrainConfig's alpha, tau and reduction, as `learn` uses
            epochs=epochs,
            batch_size=self.cfg.batch_size,
            lr=choice["lr"],
            warmup_epochs=choice["warmup_epochs"],
            kd="none" if teacher is None else "soft",
            seed=self.cfg.seed,
            log_every=10**9,
            eval_each_epoch=False,
        )
        return fit(model, self.tuning, self.view, cfg, identity={}, teacher=teacher)

    def curve(self, init: str, depth: int, width: int, genes: dict, rows: dict, record, flops: dict) -> None:
        """An alternative at its first budget, doubled until it matches the best learngene here on validation,
        stops improving, or reaches `max_epochs`. With no learngene here, the first budget only. Past its first
        budget, an alternative other than scratch stops once its next run would cost more than an alternative
        that already matched here: it could no longer be the best alternative (scratch runs on regardless: the
        papers' comparison needs its whole curve)."""
        here = [rows.get((depth, width, m, self.cfg.epochs), {}).get("val_top1") for m in LEARNGENES]
        target = max((t for t in here if t is not None), default=None)
        last = None
        for epochs in self.cfg.curve_epochs():
            key = (depth, width, init, epochs)
            if key not in rows:
                if (
                    last is not None
                    and init != "scratch"
                    and 2 * row_flops(rows[_key_at(key, last)], flops)
                    > min((row_flops(r, flops) for r in _matches(rows, depth, width, target)), default=math.inf)
                ):
                    return
                record(self.row(init, depth, width, epochs, genes, rows))
            row = rows[key]
            if "skipped" in row or target is None or row["val_top1"] >= target:
                return
            if last is not None and row["val_top1"] - last["val_top1"] < self.cfg.min_gain:
                return
            last = row


def _key_at(key: tuple, row: dict) -> tuple:
    return (*key[:3], row["epochs"])


def _matches(rows: dict, depth: int, width: int, target: float | None):
    """The alternative runs at this size that already reach `target` on validation."""
    return [
        r
        for (d, w, init, _), r in rows.items()
        if (d, w) == (depth, width) and init in ALTERNATIVES and target is not None and r.get("val_top1", -1) >= target
    ]


def _reporter(log, what):
    def report(**e):
        if "epoch_end" in e:
            log(f"{what}: epoch {e['epoch_end']}/{e['epochs']} validation top-1 {e['top1']:.4f}")

    return report


def _write_json(path: Path, report: dict) -> None:
    from lgtool.format.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
