"""Fine-tune a Desc-Net (or any timm hub-layout folder), or train a plain ViT from timm's init (`scratch`).

Writes OUT/best/ and OUT/last/ as hub-layout folders that plain timm loads, with the lineage kept."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import torch

from lgtool.format.arch import (
    Arch,
    build_vit,
    check_memory,
    check_size_options,
    default_patch_size,
    one_line,
    parse_width,
)
from lgtool.format.atomic import WriteFailed, scoped, write_json
from lgtool.format.errors import InputError
from lgtool.format.outputs import check_inside, check_output
from lgtool.hub import CONFIG, check_channels, read_config, write_descnet
from lgtool.learngene import first_nonfinite
from lgtool.training.ancestor import load_ancestor, load_folder, shipped_ancestor, weights_file
from lgtool.training.data import View, data_paths, load_data
from lgtool.training.loop import Dist, TrainConfig, fit

CHECKPOINT = "checkpoint.ckpt"
# What finetune writes inside its output folder: name -> whether it is a folder.
OUTPUTS = {"best": True, "last": True, CHECKPOINT: False, "metrics.json": False}


def load_source(src: str, num_classes: int | None):
    """A timm model from a hub-layout folder (or a shipped ancestor's short name), with its Arch, view and lineage.

    Everything about the folder is checked before training: its config.json describes a plain ViT, its weights
    file is readable and holds exactly that model's tensors, all finite. Any fault is one InputError line."""

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
    kwargs = {} if num_classes in (None, arch.num_classes) else {"num_classes": num_classes}
    model = load_folder(Path(src), **kwargs)
    _check_finite(model, Path(src))
    view = View.from_input_cfg(config.get("pretrained_cfg", {}), arch.img_size, arch.in_chans)
    return model, arch.model_copy(update={"num_classes": model.num_classes}), view, config.get("lgtool", {})


def _check_finite(model, folder: Path) -> None:
    """Refuse a source whose weights hold NaN or Inf: training would only fail at its first step, or worse."""

    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise InputError(
            f"{weights_file(folder) or folder} holds non-finite weights (NaN or Inf in {bad}); "
            "fine-tune a finite model, e.g. a fresh lgtool expand"
        )


def scratch_model(
    data_view: View,
    num_classes: int,
    width="tiny",
    depth: int = 12,
    num_heads=None,
    img_size=None,
    patch_size=None,
    seed: int = 0,
):
    """A plain ViT of the lgtool family from timm's default init, seeing images as the data provides them."""

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
    torch.manual_seed(seed)
    view = dataclasses.replace(data_view, img_size=img)
    check_memory(arch, "finetune --init scratch")
    return build_vit(arch), arch, view


@scoped
def finetune(
    src: str | None,
    data: str,
    output,
    *,
    init: str = "pretrained",
    data_dir=None,
    num_classes=None,
    width="tiny",
    depth: int = 12,
    num_heads=None,
    img_size=None,
    patch_size=None,
    train_samples=None,
    cfg: TrainConfig | None = None,
    ancestor: str | None = None,
    resume=None,
    force: bool = False,
    log=None,
) -> dict:
    """Train `src` (or a fresh ViT with `init="scratch"`) on `data`; with `ancestor`, distil from it as a
    teacher with `cfg`'s KD settings (the loss `learn` uses)."""

    cfg = cfg or TrainConfig(kd="none")
    output = Path(output)
    inputs = [
        src and (shipped_ancestor(src) or src),
        ancestor and (shipped_ancestor(ancestor) or ancestor),
        *data_paths(data, data_dir),
    ]
    check_output(output, inputs=inputs, force=force or resume is not None, is_dir=True)
    # and what is written inside it: never an input (the checkpoint may be the one resumed from), nor a link
    # to another of its outputs
    inside = {name: is_dir for name, is_dir in OUTPUTS.items() if name != CHECKPOINT}
    check_inside(output, inside, inputs=[*inputs, resume], others=[output / CHECKPOINT])
    check_inside(output, {CHECKPOINT: False}, inputs=inputs, others=[output / n for n in inside])
    if init == "scratch":
        check_size_options(width, num_heads, img_size, patch_size, depth=depth)
    dataset = load_data(data, data_dir, train_samples, seed=cfg.seed)
    if init == "scratch":
        model, arch, view = scratch_model(
            dataset.view, dataset.num_classes, width, depth, num_heads, img_size, patch_size, cfg.seed
        )
        lineage = {"init": "scratch"}
    elif src is None:
        raise InputError("give a model folder to fine-tune, or --init scratch with architecture options")
    else:
        model, arch, view, lineage = load_source(src, num_classes or dataset.num_classes)
        lineage = lineage or {"init": f"folder {src}"}
    if arch.num_classes != dataset.num_classes:
        raise InputError(
            f"the model has {arch.num_classes} classes, the data {dataset.num_classes}: "
            f"pass --num-classes {dataset.num_classes} for a fresh head"
        )
    trained_on = {"data": data, "train_samples": len(dataset.train)}
    teacher = None
    if ancestor is not None and cfg.kd != "none":
        teacher = load_ancestor(ancestor, num_classes=dataset.num_classes)
        lineage = {**lineage, "teacher": ancestor, "kd": cfg.kd, "alpha": cfg.alpha, "tau": cfg.tau}
    dist = Dist.from_env()

    def on_epoch(epoch: int, top1: float, history: list, evaluated):
        if top1 >= max(h["top1"] for h in history):  # history includes epochs before a resume
            with _keeping(output / CHECKPOINT, "the training up to the previous epoch"):
                _write(evaluated, arch, view, output / "best", lineage, trained_on, cfg, {"top1": top1, "epoch": epoch})

    identity = {"kind": "finetune", "arch": arch.model_dump(), "source": str(src) if src else "scratch"}
    summary = fit(
        model,
        dataset,
        view,
        cfg,
        identity=identity,
        checkpoint=output / CHECKPOINT,
        resume=resume,
        teacher=teacher,
        log=log,
        on_epoch=on_epoch,
    )
    if dist.main:
        history = summary["history"]
        best_row = max(history, key=lambda h: h["top1"]) if history else {"top1": None, "epoch": None}
        last = {"top1": history[-1]["top1"], "epoch": cfg.epochs}
        with _keeping(output / CHECKPOINT, "the finished training"):
            _write(model, arch, view, output / "last", lineage, trained_on, cfg, last)
            write_json(output / "metrics.json", {"history": history, **summary})
    else:
        best_row = {"top1": None, "epoch": None}
    return {
        "output": str(output),
        "best": str(output / "best"),
        "last": str(output / "last"),
        "best_top1": best_row["top1"],
        "best_epoch": best_row["epoch"],
        "params": arch.num_params(),
        **{k: v for k, v in summary.items() if k != "history"},
    }


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
