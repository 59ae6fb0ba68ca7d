"""The bench's plan (`plan_bench`): every check that can be made before anything is loaded (the settings, the
ancestor's name, given learngenes' headers, the output folder and the results.json a resumed bench must agree
with), so that running it (`lgtool.bench.run`) only loads, trains and writes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lgtool.base.arch import Arch, first_error, parse_width
from lgtool.base.errors import InputError, UsageError
from lgtool.base.outputs import check_work_folder
from lgtool.base.settings import declared, flag
from lgtool.baselines import policy_names
from lgtool.bench.cost import LEARNGENES, init_names
from lgtool.bench.settings import BenchConfig, BenchIO
from lgtool.learngene import read_header
from lgtool.rules import RULES
from lgtool.training.ancestor import ancestor_heads, resolve_ancestor, shipped_ancestor
from lgtool.training.data import check_data

DEFAULT_ANCESTORS = {"fashion-mnist": "fmnist-vit"}  # shipped, already trained: the bench never trains one
SCHEMA = "lgtool-bench/4"  # 4: rows per seed, learngenes per seed ("learned")


@dataclass(frozen=True)
class BenchPlan:
    """A bench checked and ready to run: its settings, what it reads and where it writes, with everything that can
    be known before loading a tensor or an image already known. Nothing written."""

    cfg: BenchConfig
    io: BenchIO
    ancestor: str  # --ancestor, or the data's shipped one
    out: Path
    previous: dict  # the results.json being resumed; empty for a new bench
    given: dict[str, Path]  # learngenes passed in, by method (headers read)

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    def describe(self) -> dict:
        """What the run would do, in plain values (`lgtool bench --dry-run` prints them); `config` as results.json
        records it. Nothing is loaded."""
        return {
            "ancestor": self.ancestor,
            "data": self.io.data,
            "data_dir": self.io.data_dir,
            "sizes": self.cfg.sizes(),
            "learngenes": {method: str(path) for method, path in self.given.items()},
            "output": str(self.out),
            "resume": self.io.resume,
            "rows_done": len(self.previous.get("rows", [])),
            "config": asdict(self.cfg),
        }


def plan_bench(cfg: BenchConfig, io: BenchIO) -> BenchPlan:
    """Every check a bench can make before it loads anything (settings are checked by their dataclasses): the
    ancestor's name, the output folder and the bench it would continue, the given learngenes' headers, and whether
    --width divides into the heads (the ancestor's, where its folder declares them). Reads headers only."""
    ancestor = io.ancestor or DEFAULT_ANCESTORS.get(io.data)
    if ancestor is None:
        raise UsageError(f"--ancestor is required for --data {io.data} (a trained model on these labels)")
    out = Path(io.output)
    results_path = out / "results.json"
    if results_path.is_file() and not io.resume:
        raise InputError(f"{out} already holds a bench; pass --resume to continue it or choose another -o")
    previous = previous_results(results_path) if io.resume and results_path.is_file() else {}
    check_same_settings(previous.get("config"), cfg, results_path)
    check_work_folder(out)  # a dangling link, a file, a folder that cannot be written: before any data
    resolve_ancestor(ancestor)
    given = {read_header(p)[1].method: Path(p) for p in io.learngenes}
    check_family(cfg, ancestor, ancestor_heads(ancestor), given)  # a folder ancestor declares its heads
    check_data(io.data, io.data_dir)
    return BenchPlan(cfg, io, ancestor, out, previous, given)


def previous_results(results_path: Path) -> dict:
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


# What a resumed bench may change: more (or other) seeds only add rows; every other setting changes what a row means.
MAY_CHANGE_ON_RESUME = ("seeds",)


def check_same_settings(recorded: dict | None, cfg: BenchConfig, results_path: Path) -> None:
    """A bench resumes only with the settings its rows were made with (seeds aside): an InputError naming the first
    that differs. A results.json that records none (written by hand) is taken as it is."""
    if not isinstance(recorded, dict):
        return
    now = json.loads(json.dumps(asdict(cfg)))  # as results.json holds it: tuples as lists
    for f in declared(BenchConfig) + [f for f in fields(BenchConfig) if f.name == "rule_options"]:
        if f.name in MAY_CHANGE_ON_RESUME or f.name not in recorded or recorded[f.name] == now[f.name]:
            continue
        name = flag(f) if f.metadata.get("cli", True) and "help" in f.metadata else f"BenchConfig.{f.name}"
        raise InputError(
            f"{results_path} was benched with {name} {_shown(recorded[f.name])}, not {_shown(now[f.name])}; resume "
            "with the same settings (only --seeds may change) or choose another -o"
        )


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


_Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]


def _one_of(names):
    """A string among `names()`, asked at every check (the registries read now)."""

    def check(value: str) -> str:
        if value not in names():
            raise ValueError(f"unknown {value!r}: not one of {', '.join(names())}")
        return value

    return AfterValidator(check)


class _Row(BaseModel):
    """What resuming reads of a row: its key and the numbers later rows and the report are built on."""

    model_config = ConfigDict(extra="allow", strict=True)
    depth: Annotated[int, Field(ge=1)]
    width: Annotated[int, Field(ge=1)]
    init: Annotated[str, _one_of(init_names)]
    epochs: _Count
    seed: Annotated[int, Field(ge=0)]
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
    layer_policy: Annotated[str, _one_of(policy_names)] | None = None


class _Learned(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    images: _Count | None = None
    teacher_images: _Count | None = None
    student_images: dict[str, _Count] | None = None
    ordering_images: _Count | None = None


class _Resumed(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    ancestor: dict[str, object] = {}
    learned: dict[str, dict[Literal[LEARNGENES], _Learned]] = {}
    rows: list[_Row] = []


def ancestor_cost(ancestor: str) -> dict:
    """The ancestor's training images as its folder records them (lgtool's training writes them); paid once."""

    config = Path(shipped_ancestor(ancestor) or ancestor) / "config.json"
    try:
        tune = json.loads(config.read_text())["lgtool"]["finetune"]
        images = tune["epochs"] * tune["train_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"training_images": None, "paid": "unknown: not trained by lgtool"}
    return {"training_images": images, "paid": "already paid: a pretrained model, trained once for every use"}


def check_family(cfg: BenchConfig, ancestor: str, ancestor_num_heads: int | None, given: dict) -> tuple[int, int]:
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


def row_key(row: dict) -> tuple:
    return row["depth"], row["width"], row["init"], row["epochs"], row["seed"]
