"""Learning on data: distil a learngene from an ancestor (`learn`) with the one loop in `loop.py`.
A new size's WAVE scalers are learned by `calibrate.py`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lgtool.family import family_targets, size_key, with_size_tensors
from lgtool.format import __version__
from lgtool.format.arch import MAX_DEPTH, check_memory, check_size_options, default_patch_size, parse_width
from lgtool.format.atomic import WriteFailed, discard, scoped
from lgtool.format.errors import InputError, UsageError
from lgtool.format.outputs import check_output
from lgtool.learngene import check_rule_options, init_learngene
from lgtool.materialize import build_aux
from lgtool.rules import rule_module
from lgtool.training.ancestor import ancestor_view, is_vit, load_ancestor, shipped_ancestor
from lgtool.training.data import data_paths, load_data
from lgtool.training.loop import Dist, TrainConfig, evaluate, fit
from lgtool.training.seed import seed_from_ancestor

INITS = ("official", "ancestor")
# Training settings worth keeping in a learngene's provenance when they are on.
RECIPE_RECORD = (
    "aa",
    "color_jitter",
    "reprob",
    "mixup",
    "cutmix",
    "smoothing",
    "drop_path",
    "model_ema",
    "lr_base_size",
)  # the papers' initialization, or templates seeded from the ancestor's layers


@scoped
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
    dataset=None,
    checkpoint=None,
    resume=None,
    log=None,
    cfg: TrainConfig | None = None,
    evaluate_ancestor: bool = True,
    init: str | None = None,
    force: bool = False,
    family: list[tuple] | None = None,
    family_samples: int = 3,
    **rule_options,
) -> dict:
    """Train a learngene's templates through its Aux-Net by distillation from `ancestor`; write it to `output`.

    `init`: "official" starts from the paper's initialization, "ancestor" from templates seeded from the
    ancestor's own layers (`lgtool.training.seed`), which needs a ViT ancestor at least as wide; None (the default):
    "ancestor" wherever the ancestor allows it, else "official" (`default_init`). `dataset` (already loaded: its train
    split is distilled on, its test split evaluated) replaces `data` and `train_samples`.

    `family`: (depth, width) sizes (None: the Aux one) to distil the learngene for at once, each step
    through `family_samples` of them (`lgtool.family`); by default the Aux size alone, as the papers."""

    rule_module(method)  # a typo fails before any data or ancestor is loaded
    if init is not None and init not in INITS:
        raise UsageError(f"unknown init {init!r}: choose {' or '.join(INITS)}")
    cfg = cfg or TrainConfig.for_command("learn")
    if stages:
        rule_options["stages"] = stages
    check_size_options(width, num_heads, img_size, patch_size)
    if family_samples < 2:
        raise UsageError(
            f"--family-samples must be at least 2 (the largest and the smallest size), got {family_samples}"
        )
    if aux_depth is not None and aux_depth > MAX_DEPTH:
        raise UsageError(f"--aux-depth {aux_depth} is more than lgtool builds (at most {MAX_DEPTH})")
    check_rule_options(method, aux_depth, rule_options)
    # Outputs too: a bad -o must fail now, not after training. No output is an input or another output.
    output = Path(output)
    inputs = [shipped_ancestor(ancestor) or ancestor, ancestor_weights, *data_paths(data, data_dir)]
    check_output(output, inputs=[*inputs, resume], force=force)
    checkpoint_given = checkpoint is not None
    checkpoint = Path(checkpoint) if checkpoint_given else output.with_suffix(".ckpt")
    if not checkpoint_given and os.path.realpath(checkpoint) == os.path.realpath(output):
        raise InputError(
            f"-o {output} is also its default checkpoint (the output with .ckpt); name the learngene "
            f"{output.with_suffix('.safetensors').name}, or pass --checkpoint"
        )
    if resume is None and os.path.lexists(checkpoint) and not force:
        raise InputError(
            f"{checkpoint} holds an earlier run: continue it with --resume {checkpoint}, or pass --force to start over"
        )
    # the checkpoint may be the one resumed from (it is read before the first save), never another input
    check_output(checkpoint, inputs=inputs, others=[output], force=force, keep=[resume])
    dataset = dataset or load_data(data, data_dir, train_samples, seed=cfg.seed)
    teacher = load_ancestor(ancestor, ancestor_weights, num_classes=dataset.num_classes)
    width = width or getattr(teacher, "embed_dim", "tiny")
    init_why = None
    if init is None:
        init, init_why = default_init(teacher, parse_width(width, num_heads)[0])
    if init == "ancestor" and not is_vit(teacher):
        raise InputError(
            f"--init ancestor seeds the templates from a ViT ancestor's blocks; {ancestor} has none: "
            "use --init official (the papers' initialization, everything learned by distillation)"
        )
    view = ancestor_view(teacher, dataset.view)
    if img_size:
        view.img_size = img_size
    gene = init_learngene(
        method,
        width=width,
        num_heads=num_heads,
        aux_depth=aux_depth,
        img_size=view.img_size,
        # a ViT ancestor's own patch size by default, so that its patch embedding can seed the learngene's
        patch_size=patch_size
        or (teacher.patch_embed.patch_size[0] if is_vit(teacher) else default_patch_size(view.img_size)),
        in_chans=view.in_chans,
        num_classes=dataset.num_classes,
        seed=cfg.seed,
        input=view.norm,
        **rule_options,
    )
    if init == "ancestor":
        gene = seed_from_ancestor(gene, teacher.state_dict())
    targets = family_targets(gene, family)
    for arch in (gene.arch, targets[-1]):  # the Aux-Net, and the family's largest size
        check_memory(arch, "learn (the Aux-Net)" if arch == gene.arch else "learn (the family's largest size)")
    gene = with_size_tensors(gene, targets)
    aux = build_aux(gene, drop_path_rate=cfg.drop_path, family=targets, samples=family_samples, seed=cfg.seed)
    identity = {"kind": "learn", "method": method, "arch": gene.arch.model_dump(), "rule": gene.rule.model_dump()}
    if aux.family:  # a resume must continue the same family (a family of the Aux size alone is plain learning)
        identity["family"] = {"sizes": [size_key(a) for a in aux.family], "samples": family_samples}
    started = time.time()
    summary = fit(
        aux, dataset, view, cfg, identity=identity, checkpoint=checkpoint, resume=resume, teacher=teacher, log=log
    )
    learned = aux.to("cpu").to_learngene()
    learned.meta.provenance.update(
        ancestor=ancestor,
        ancestor_weights=ancestor_weights,
        data=data,
        train_samples=len(dataset.train),
        epochs=cfg.epochs,
        steps=summary["steps"],
        teacher_images=summary["teacher_images"],  # forwards it ran; repeated inputs came from its cache
        seed=cfg.seed,
        init=init,
        **({"init_why": init_why} if init_why else {}),
        batch_size=cfg.batch_size,
        lr=summary["lr"],
        recipe={k: getattr(cfg, k) for k in RECIPE_RECORD if getattr(cfg, k) not in (None, 0, 0.0, False)},
        kd=cfg.kd,
        alpha=cfg.alpha,
        tau=cfg.tau,
        kd_reduction=cfg.kd_reduction,
        aux_top1=summary["top1"],
        **({"family": {**identity["family"], "images": aux.family_report()}} if aux.family else {}),
        lgtool_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    )

    if Dist.from_env().main:
        try:
            learned.save(output)
        except WriteFailed as e:  # e.g. a full disk: the last checkpoint holds the finished training
            raise e.keeping(f"the training is kept in {checkpoint}: write it with --resume {checkpoint}") from None
        if not checkpoint_given:  # the run is done: its default checkpoint would only be a leftover
            discard(checkpoint)
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
        "checkpoint": str(checkpoint) if checkpoint.exists() else None,
        "family_images": aux.family_report() if aux.family else None,
        **{k: v for k, v in summary.items() if k != "top1"},
    }


def default_init(teacher, width: int) -> tuple[str, str]:
    """`learn`'s init when none is given, and why: templates seeded from the ancestor wherever it allows it (a
    ViT at least as wide as the learngene: seeding selects from its layers), since after a short learn they
    beat the papers' initialization (see CHANGELOG); else the papers' initialization."""

    if not is_vit(teacher):
        return "official", "the ancestor is not a ViT: it has no blocks to seed from"
    if teacher.embed_dim < width:
        return "official", f"the ancestor ({teacher.embed_dim} wide) is narrower than the learngene ({width})"
    return "ancestor", "seeded from the ancestor's layers (the default where the ancestor allows it)"
