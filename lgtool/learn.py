"""Learning on data: distil a learngene from an ancestor (`learn`), and learn the WAVE scalers of a new
size with the templates frozen (`calibrate`). Both run the one loop in `train.py`."""

from __future__ import annotations

import time
from pathlib import Path

from lgtool import __version__
from lgtool.data import View, load_data
from lgtool.errors import UsageError
from lgtool.learngene import GeneMeta, Learngene, init_learngene, tensor_specs
from lgtool.materialize import build_aux, target_arch
from lgtool.rules import rule_module, wave
from lgtool.train import TrainConfig, evaluate, fit

INITS = ("official", "ancestor")  # the papers' initialization, or templates seeded from the ancestor's layers


def ancestor_view(ancestor, data_view: View) -> View:
    """Images as the ancestor was trained to see them: its input size, channels and normalization."""
    cfg = getattr(ancestor, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (data_view.in_chans, data_view.img_size, data_view.img_size))
    return View(
        img_size=size[-1],
        in_chans=ancestor.patch_embed.proj.in_channels if hasattr(ancestor, "patch_embed") else size[0],
        mean=tuple(cfg.get("mean", data_view.mean)),
        std=tuple(cfg.get("std", data_view.std)),
        crop_pct=cfg.get("crop_pct", data_view.crop_pct),
        interpolation=cfg.get("interpolation", data_view.interpolation),
    )


def default_patch_size(img_size: int) -> int:
    """16 for ImageNet-sized inputs; for small images, a 4 x 4 grid of patches (28 px -> 7)."""
    return 16 if img_size >= 112 else max(1, img_size // 4)


def learn(
    ancestor: str,
    method: str = "sws",
    data: str = "fashion-mnist",
    output="learngene.safetensors",
    *,
    ancestor_weights: str | None = None,
    data_dir: str | None = None,
    width=None,
    num_heads: int | None = None,
    aux_depth: int | None = None,
    stages: list[int] | None = None,
    img_size: int | None = None,
    patch_size: int | None = None,
    train_samples: int | None = None,
    checkpoint=None,
    resume=None,
    log=None,
    cfg: TrainConfig | None = None,
    evaluate_ancestor: bool = True,
    init: str = "official",
    **rule_options,
) -> dict:
    """Train a learngene's templates through its Aux-Net by distillation from `ancestor`; write it to `output`.

    `init`: "official" starts from the paper's initialization, "ancestor" from templates seeded from the
    ancestor's own layers (`lgtool.seed`)."""
    from lgtool.ancestor import load_ancestor

    rule_module(method)  # a typo fails before any data or ancestor is loaded
    if init not in INITS:
        raise UsageError(f"unknown init {init!r}: choose {' or '.join(INITS)}")
    cfg = cfg or TrainConfig()
    dataset = load_data(data, data_dir, train_samples, seed=cfg.seed)
    teacher = load_ancestor(ancestor, ancestor_weights, num_classes=dataset.num_classes)
    view = ancestor_view(teacher, dataset.view)
    if img_size:
        view.img_size = img_size
    if stages:
        rule_options["stages"] = stages
    gene = init_learngene(
        method,
        width=width or getattr(teacher, "embed_dim", "tiny"),
        num_heads=num_heads,
        aux_depth=aux_depth,
        img_size=view.img_size,
        patch_size=patch_size or default_patch_size(view.img_size),
        in_chans=view.in_chans,
        num_classes=dataset.num_classes,
        seed=cfg.seed,
        input={
            "mean": list(view.mean),
            "std": list(view.std),
            "crop_pct": view.crop_pct,
            "interpolation": view.interpolation,
        },
        **rule_options,
    )
    if init == "ancestor":
        from lgtool.seed import seed_from_ancestor

        gene = seed_from_ancestor(gene, teacher.state_dict())
    aux = build_aux(gene, drop_path_rate=cfg.drop_path)
    output = Path(output)
    checkpoint = Path(checkpoint) if checkpoint else output.with_suffix(".ckpt")
    identity = {"kind": "learn", "method": method, "arch": gene.arch.model_dump(), "rule": gene.rule.model_dump()}
    started = time.time()
    summary = fit(
        aux, dataset, view, cfg, identity=identity, checkpoint=checkpoint, resume=resume, teacher=teacher, log=log
    )
    learned = aux.to("cpu").to_learngene()
    learned.meta.provenance.update(
        ancestor=ancestor,
        ancestor_weights=ancestor_weights,
        data=data,
        train_samples=train_samples or len(dataset.train),
        epochs=cfg.epochs,
        steps=summary["steps"],
        seed=cfg.seed,
        init=init,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        kd=cfg.kd,
        alpha=cfg.alpha,
        tau=cfg.tau,
        kd_reduction=cfg.kd_reduction,
        aux_top1=summary["top1"],
        lgtool_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    )
    from lgtool.train import Dist

    if Dist.from_env().main:
        learned.save(output)
    ancestor_top1 = evaluate(teacher, dataset.test, view) if evaluate_ancestor else None
    return {
        "output": str(output),
        "method": method,
        "init": init,
        "params": learned.num_params(),
        "aux_depth": gene.arch.depth,
        "width": gene.arch.embed_dim,
        "aux_top1": summary["top1"],
        "ancestor_top1": ancestor_top1,
        "checkpoint": str(checkpoint),
        **{k: v for k, v in summary.items() if k != "top1"},
    }


def resize_gene(gene: Learngene, depth: int, width=None) -> Learngene:
    """A WAVE learngene whose Aux size is the target: templates unchanged, size-specific tensors resampled."""
    target = target_arch(gene, depth, width)
    tensors = wave.resize(gene.rule, gene.tensors, gene.arch, target)
    meta = gene.meta.model_copy(update={"arch": target}, deep=True)
    meta.tensors = {name: role for name, (_, role) in tensor_specs(GeneMeta.model_validate(meta)).items()}
    return Learngene(meta, tensors)


def calibrate(
    gene: Learngene,
    depth: int,
    width,
    data: str = "fashion-mnist",
    *,
    data_dir: str | None = None,
    dataset=None,
    samples: int = 2000,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    log=None,
    measure_before: bool = True,
) -> tuple[Learngene, dict]:
    """WAVE: learn the scalers of size (depth, width) on a few images, templates (and all else) frozen.

    `dataset` (already loaded, its train split the calibration images) replaces `data` and `samples`."""
    dataset = dataset or load_data(data, data_dir, samples, seed=seed)
    g = gene.meta.input
    view = View(gene.arch.img_size, gene.arch.in_chans, tuple(g.mean), tuple(g.std), g.crop_pct, g.interpolation)
    resized = resize_gene(gene, depth, width)
    aux = build_aux(resized)
    before = evaluate(aux, dataset.test, view) if measure_before else None
    batch_size = min(batch_size, len(dataset.train))
    epochs = -(-steps // (len(dataset.train) // batch_size))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=0.0,
        warmup_epochs=0.0,
        kd="none",
        max_steps=steps,
        eval_each_epoch=False,
        seed=seed,
        log_every=max(1, steps // 10),
    )
    summary = fit(
        aux,
        dataset,
        view,
        cfg,
        identity={"kind": "calibrate"},
        trainable=lambda n: n.startswith("gene.scaler."),
        log=log,
    )
    calibrated = aux.to("cpu").to_learngene()
    calibrated.meta.provenance.update(
        calibration={"data": data, "samples": len(dataset.train), "steps": summary["steps"]}
    )
    info = {"top1_before": before, "top1_after": summary["top1"], "steps": summary["steps"]}
    return calibrated, {**info, "images": summary["images_seen"]}
