"""Fine-tune a Desc-Net (or any timm hub-layout folder), or train a plain ViT from timm's init (`scratch`).

Writes OUT/best/ and OUT/last/ as hub-layout folders that plain timm loads, with the lineage kept. A plan, then a
run: `plan_finetune` makes every check that needs no model and no data and writes nothing; `run_finetune` loads,
trains and writes."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from lgtool.base.arch import Arch, build_vit, check_training_memory, default_patch_size, one_line, parse_width
from lgtool.base.atomic import scoped, write_json
from lgtool.base.errors import InputError, WriteFailed
from lgtool.base.outputs import check_inside, check_output
from lgtool.hub import CONFIG, check_channels, read_config, write_descnet
from lgtool.learngene import first_nonfinite
from lgtool.training.ancestor import load_ancestor, load_folder, resolve_ancestor, shipped_ancestor, weights_file
from lgtool.training.data import View, check_data, data_paths, load_data
from lgtool.training.loop import Dist, TrainConfig, evaluate, fit
from lgtool.training.settings import FinetuneConfig, training_description

CHECKPOINT = "checkpoint.ckpt"
# What finetune writes inside its output folder: name -> whether it is a folder.
OUTPUTS = {"best": True, "last": True, CHECKPOINT: False, "metrics.json": False}


@dataclass(frozen=True)
class FinetunePlan:
    """A `finetune` run, checked before any model or data is loaded."""

    settings: FinetuneConfig
    cfg: TrainConfig
    source: Source | None  # None: a model from timm's init (--init scratch)
    teaches: bool  # whether the ancestor distils into the model (given, and cfg.kd is not "none")

    def describe(self) -> dict:
        """What the run would do, in plain values (`lgtool finetune --dry-run` prints them); nothing is loaded."""
        s, cfg, src = self.settings, self.cfg, self.source
        if src is None:
            width, heads = parse_width(s.width, s.num_heads)
            depth, classes = s.depth, None  # the data's classes
        else:
            width, heads, depth, classes = src.arch.embed_dim, src.arch.num_heads, src.arch.depth, src.arch.num_classes
        return {
            "source": None if src is None else s.src,  # None: timm's init (--init scratch)
            "width": width,
            "num_heads": heads,
            "depth": depth,
            "num_classes": s.num_classes or classes,  # None: the data's
            "teacher": s.ancestor if self.teaches else None,
            "kd": cfg.kd if self.teaches else None,
            **training_description(s, cfg),
            "output": str(s.output),
            "writes": [f"{name}/" if is_dir else name for name, is_dir in OUTPUTS.items()],
            "resume": None if s.resume is None else str(s.resume),
        }


@scoped
def finetune(settings: FinetuneConfig, cfg: TrainConfig | None = None, *, on_event=None) -> dict:
    """Train `settings.src` (or a fresh ViT with `init="scratch"`) on `settings.data`; with `settings.ancestor`,
    distil from it as a teacher with `cfg`'s KD settings (the loss `learn` uses). `cfg` defaults to no KD."""

    return run_finetune(plan_finetune(settings, cfg), on_event=on_event)


def plan_finetune(settings: FinetuneConfig, cfg: TrainConfig | None = None) -> FinetunePlan:
    """Every check `finetune` makes before loading a model or data, each a one-line error; nothing is written.

    The settings checked themselves when built (`FinetuneConfig`); here: the output folder and what goes inside
    it, the source folder's config.json, what the ancestor is, that the checkpoint to resume from is there, and that
    the data is where it is named."""

    s, cfg = settings, cfg or TrainConfig(kd="none")
    _check_outputs(s)
    if s.init == "scratch":
        source = None
    elif s.src is None:
        raise InputError("give a model folder to fine-tune, or --init scratch with architecture options")
    else:
        source = read_source(s.src)
    teaches = s.ancestor is not None and cfg.kd != "none"
    if teaches:
        resolve_ancestor(s.ancestor)
    if s.resume is not None and not s.resume.is_file():
        raise InputError(f"--resume {s.resume}: no such checkpoint")
    check_data(s.data, s.data_dir)
    return FinetunePlan(s, cfg, source, teaches)


def _check_outputs(s: FinetuneConfig) -> None:
    """The output folder and what finetune writes inside it, checked and claimed (`lgtool.base.outputs`)."""

    inputs = [
        s.src and (shipped_ancestor(s.src) or s.src),
        s.ancestor and (shipped_ancestor(s.ancestor) or s.ancestor),
        *data_paths(s.data, s.data_dir),
    ]
    check_output(s.output, inputs=inputs, force=s.force or s.resume is not None, is_dir=True)
    # and what is written inside it: never an input (the checkpoint may be the one resumed from), nor a link
    # to another of its outputs
    inside = {name: is_dir for name, is_dir in OUTPUTS.items() if name != CHECKPOINT}
    check_inside(s.output, inside, inputs=[*inputs, s.resume], others=[s.output / CHECKPOINT])
    check_inside(s.output, {CHECKPOINT: False}, inputs=inputs, others=[s.output / n for n in inside])


def run_finetune(plan: FinetunePlan, *, on_event=None) -> dict:
    """Load the data and the model, train, and write OUT/best/, OUT/last/ and OUT/metrics.json, as `plan` says."""

    s, cfg, output = plan.settings, plan.cfg, plan.settings.output
    dataset = load_data(s.data, s.data_dir, s.train_samples, seed=cfg.seed)
    if s.val_fraction is not None:  # held out as the bench holds it out, so a bench's recipe trains alike
        dataset = dataset.held_out(s.val_fraction, cfg.seed + 1)
    split = "test" if dataset.val is None else "validation"
    model, arch, view, lineage = _model(plan, dataset)
    teacher = None
    if plan.teaches:
        teacher = load_ancestor(s.ancestor, num_classes=dataset.num_classes)
        lineage = {**lineage, "teacher": s.ancestor, "kd": cfg.kd, "alpha": cfg.alpha, "tau": cfg.tau}
    trained_on = {"data": s.data, "train_samples": len(dataset.train), "evaluated_on": split}

    def write(model, name: str, score: dict, which: str):
        with _keeping(output / CHECKPOINT, which):
            _write(model, arch, view, output / name, lineage, trained_on, cfg, score)

    def on_epoch(epoch: int, top1: float, history: list, evaluated):
        if top1 >= max(h["top1"] for h in history):  # history includes epochs before a resume
            write(evaluated, "best", {"top1": top1, "epoch": epoch}, "the training up to the previous epoch")

    identity = {"kind": "finetune", "arch": arch.model_dump(), "source": str(s.src) if s.src else "scratch"}
    summary = fit(model, dataset, view, cfg, identity=identity, checkpoint=output / CHECKPOINT, resume=s.resume,
                  teacher=teacher, on_event=on_event, on_epoch=on_epoch, evaluate_on=dataset.val)  # fmt: skip
    best_row, reported = {"top1": None, "epoch": None}, {}
    if Dist.from_env().main:
        history = summary["history"]
        best_row = max(history, key=lambda h: h["top1"]) if history else best_row
        if dataset.val is not None:  # choices were made on validation; the test split is only reported
            reported["test_top1"] = evaluate(getattr(model, "module", model), dataset.test, view)
        write(model, "last", {"top1": history[-1]["top1"], "epoch": cfg.epochs}, "the finished training")
        with _keeping(output / CHECKPOINT, "the finished training"):
            write_json(output / "metrics.json", {"history": history, **summary})
    return {
        "output": str(output),
        "best": str(output / "best"),
        "last": str(output / "last"),
        "best_top1": best_row["top1"],
        "best_epoch": best_row["epoch"],
        "evaluated_on": split,  # the split best_top1 (and the choice of best/) was measured on
        **reported,
        "params": arch.num_params(),
        **{k: v for k, v in summary.items() if k != "history"},
    }


def _model(plan: FinetunePlan, dataset):
    """The model to train, its Arch, the view of the data it sees, and its lineage: the source folder's model
    (a fresh head for `num_classes`), or a fresh ViT."""

    s = plan.settings
    if plan.source is None:
        arch, view = scratch_arch(dataset.view, dataset.num_classes, s.width, s.depth, s.num_heads, s.img_size,
                                  s.patch_size)  # fmt: skip
        check_training_memory(arch, "finetune --init scratch", plan.cfg.batch_size, plan.cfg.weight_copies)
        torch.manual_seed(plan.cfg.seed)
        model = build_vit(arch)
        lineage = {"init": "scratch"}
    else:
        check_training_memory(plan.source.arch, "finetune", plan.cfg.batch_size, plan.cfg.weight_copies)
        model, arch = load_source(plan.source, s.num_classes or dataset.num_classes)
        view, lineage = plan.source.view, plan.source.lineage or {"init": f"folder {s.src}"}
    if arch.num_classes != dataset.num_classes:
        raise InputError(
            f"the model has {arch.num_classes} classes, the data {dataset.num_classes}: "
            f"pass --num-classes {dataset.num_classes} for a fresh head"
        )
    return model, arch, view, lineage


@dataclass(frozen=True)
class Source:
    """A model folder to fine-tune, as its config.json describes it (its weights not yet read)."""

    folder: Path
    arch: Arch
    view: View
    lineage: dict  # what lgtool recorded of how the model was made (empty for a folder lgtool did not write)


def read_source(src: str) -> Source:
    """What a hub-layout folder (or a shipped ancestor's short name) holds, from its config.json alone: a plain ViT
    lgtool can fine-tune, with one mean and std per input channel. Any fault is one InputError line."""

    src = str(shipped_ancestor(src) or src)
    config = read_config(src)
    args = config.get("model_args")
    if not isinstance(args, dict):
        raise InputError(
            f"{src}/{CONFIG}: no model_args object (the ViT's timm arguments); lgtool fine-tunes folders written "
            "by lgtool expand or finetune, or timm hub folders whose config.json has model_args"
        )
    try:
        arch = Arch(**args)
    except (ValueError, TypeError) as e:  # ArchError (a ValueError) says which argument; TypeError: odd keys
        raise InputError(
            f"{src}/{CONFIG}: model_args are not a plain ViT lgtool can fine-tune ({one_line(str(e))})"
        ) from None
    check_channels(config, arch.in_chans, src)
    view = View.from_input_cfg(config.get("pretrained_cfg", {}), arch.img_size, arch.in_chans)
    return Source(Path(src), arch, view, config.get("lgtool", {}))


def load_source(source: Source, num_classes: int | None):
    """The source's timm model (with a fresh head where `num_classes` differs from its own) and its Arch. Its
    weights file must be readable and hold exactly that model's tensors, all finite: else one InputError line."""

    kwargs = {} if num_classes in (None, source.arch.num_classes) else {"num_classes": num_classes}
    model = load_folder(source.folder, **kwargs)
    _check_finite(model, source.folder)
    return model, Arch.checked(source.arch, num_classes=model.num_classes)


def _check_finite(model, folder: Path) -> None:
    """Refuse a source whose weights hold NaN or Inf: training would only fail at its first step, or worse."""

    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise InputError(
            f"{weights_file(folder) or folder} holds non-finite weights (NaN or Inf in {bad}); "
            "fine-tune a finite model, e.g. a fresh lgtool expand"
        )


def scratch_arch(data_view: View, num_classes: int, width="tiny", depth: int = 12, num_heads=None, img_size=None,
                 patch_size=None) -> tuple[Arch, View]:  # fmt: skip
    """A plain ViT of the lgtool family, and the view of the data it sees (as the data provides its images)."""

    embed_dim, heads = parse_width(width, num_heads)
    img = img_size or data_view.img_size
    arch = Arch(
        img_size=img,
        patch_size=patch_size or default_patch_size(img),
        in_chans=data_view.in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        num_classes=num_classes,
    )
    return arch, dataclasses.replace(data_view, img_size=img)


@contextmanager
def _keeping(checkpoint: Path, which: str):
    """A failed write (e.g. a full disk) names the checkpoint that holds the training, if there is one."""

    try:
        yield
    except WriteFailed as e:
        if not checkpoint.is_file():
            raise
        raise e.keeping(f"{which} is kept in {checkpoint}: continue with --resume {checkpoint}") from None


def _write(model, arch: Arch, view: View, folder: Path, lineage: dict, trained_on: dict, cfg, score: dict):
    info = {
        **lineage,
        "finetune": {
            **trained_on,
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "top1": score["top1"],
            "epoch": score["epoch"],
        },
    }
    module = getattr(model, "module", model)
    write_descnet(module.state_dict(), arch, folder, view.norm, info, force=True)
