"""Learning on data: distil a learngene from an ancestor (`learn`) with the one training loop (`loop/train.py`).

A plan, then a run: `plan_learn` makes every check that needs no model and no data (the settings, what the
ancestor is, the resume checkpoint, the outputs) and writes nothing; `run_learn` loads, trains and writes.
A new size's WAVE scalers are learned by `calibrate.py`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from lgtool.base import __version__
from lgtool.base.arch import check_training_memory, default_patch_size, parse_width
from lgtool.base.atomic import discard, scoped
from lgtool.base.errors import InputError, WriteFailed
from lgtool.base.outputs import check_output
from lgtool.family import family_targets, size_key, with_size_tensors
from lgtool.learngene import init_learngene, rule_depth
from lgtool.materialize import build_aux
from lgtool.order import order_learngene
from lgtool.rules import RULES
from lgtool.training.ancestor import ancestor_view, is_vit, load_ancestor, resolve_ancestor, shipped_ancestor
from lgtool.training.data import check_data, data_paths, load_data
from lgtool.training.loop import Dist, TrainConfig, evaluate, fit
from lgtool.training.seed import seed_from_ancestor, seed_note
from lgtool.training.settings import LearnConfig, training_description

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
)


@dataclass(frozen=True)
class LearnPlan:
    """A `learn` run, checked before any model or data is loaded."""

    settings: LearnConfig
    cfg: TrainConfig
    checkpoint: Path
    keeps_checkpoint: bool  # named with --checkpoint; the default one is only a leftover once the run is done

    def describe(self) -> dict:
        """What the run would do, in plain values (`lgtool learn --dry-run` prints them); nothing is loaded."""
        s, cfg = self.settings, self.cfg
        return {
            "method": s.method,
            "ancestor": s.ancestor,
            "ancestor_weights": s.ancestor_weights,
            "width": s.width,  # None: the ancestor's
            "num_heads": s.num_heads,
            "aux_depth": rule_depth(s.method, s.aux_depth, s.rule_options),
            "init": s.init,  # None: chosen once the ancestor is loaded (`default_init`)
            "family": s.sizes,
            **training_description(s, cfg),
            "output": str(s.output),
            "replaces": os.path.lexists(s.output),
            "checkpoint": str(self.checkpoint),
            "keeps_checkpoint": self.keeps_checkpoint,
            "resume": None if s.resume is None else str(s.resume),
        }


@scoped
def learn(
    settings: LearnConfig,
    cfg: TrainConfig | None = None,
    *,
    dataset=None,
    evaluate_on=None,
    evaluate_ancestor: bool = True,
    on_event=None,
) -> dict:
    """Train a learngene's templates through its Aux-Net by distillation from `settings.ancestor`; write it to
    `settings.output`. `cfg`: how to train (default: `learn`'s own settings, `TrainConfig.for_command`).

    `settings.init`: "official" starts from the paper's initialization, "ancestor" from templates seeded from the
    ancestor's own layers (`lgtool.training.seed`), which needs a ViT ancestor at least as wide; None (the default):
    "ancestor" wherever the ancestor allows it, else "official" (`default_init`). `dataset` (already loaded: its
    train split is distilled on) replaces `settings.data` and `train_samples`; the Aux-Net (and the ancestor, with
    `evaluate_ancestor`) is evaluated on `evaluate_on`, default the data's test split.

    `settings.sizes`: (depth, width) sizes (None: the Aux one) to distil the learngene for at once, each step
    through `family_samples` of them (`lgtool.family`); by default the Aux size alone, as the papers."""

    plan = plan_learn(settings, cfg)
    return run_learn(
        plan, dataset=dataset, evaluate_on=evaluate_on, evaluate_ancestor=evaluate_ancestor, on_event=on_event
    )


def plan_learn(settings: LearnConfig, cfg: TrainConfig | None = None) -> LearnPlan:
    """Every check `learn` makes before loading a model or data, each a one-line error; nothing is written.

    The settings checked themselves when built (`LearnConfig`); here: the outputs, what the ancestor is (from its
    name and folder, `resolve_ancestor`), that the data is where it is named, and that the checkpoint to resume from
    is there."""

    checkpoint = _check_outputs(settings)
    resolve_ancestor(settings.ancestor, settings.ancestor_weights, weights_flag=True)
    check_data(settings.data, settings.data_dir)
    if settings.resume is not None and not settings.resume.is_file():
        raise InputError(f"--resume {settings.resume}: no such checkpoint")
    cfg = cfg or TrainConfig.for_command("learn")
    return LearnPlan(settings, cfg, checkpoint, keeps_checkpoint=settings.checkpoint is not None)


def _check_outputs(s: LearnConfig) -> Path:
    """The learngene file and its checkpoint, checked and claimed (`lgtool.base.outputs`), so that a bad -o fails
    now, not after training; no output is an input or another output. Returns the checkpoint's path."""

    inputs = [shipped_ancestor(s.ancestor) or s.ancestor, s.ancestor_weights, *data_paths(s.data, s.data_dir)]
    check_output(s.output, inputs=[*inputs, s.resume], force=s.force)
    checkpoint = s.checkpoint or s.output.with_suffix(".ckpt")
    if s.checkpoint is None and os.path.realpath(checkpoint) == os.path.realpath(s.output):
        raise InputError(
            f"-o {s.output} is also its default checkpoint (the output with .ckpt); name the learngene "
            f"{s.output.with_suffix('.safetensors').name}, or pass --checkpoint"
        )
    if s.resume is None and os.path.lexists(checkpoint) and not s.force:
        raise InputError(
            f"{checkpoint} holds an earlier run: continue it with --resume {checkpoint}, or pass --force to start over"
        )
    # the checkpoint may be the one resumed from (it is read before the first save), never another input
    check_output(checkpoint, inputs=inputs, others=[s.output], force=s.force, keep=[s.resume])
    return checkpoint


def run_learn(
    plan: LearnPlan, *, dataset=None, evaluate_on=None, evaluate_ancestor: bool = True, on_event=None
) -> dict:
    """Load the data and the ancestor, distil the learngene and write it, as `plan` says (see `learn`)."""

    s, cfg = plan.settings, plan.cfg
    if dataset is None:
        dataset = load_data(s.data, s.data_dir, s.train_samples, seed=cfg.seed)
        if s.val_fraction is not None:  # held out as the bench holds it out, so a bench's recipe learns alike
            dataset = dataset.held_out(s.val_fraction, cfg.seed + 1)
    if evaluate_on is None:
        evaluate_on = dataset.test if dataset.val is None else dataset.val
    teacher = load_ancestor(s.ancestor, s.ancestor_weights, num_classes=dataset.num_classes, weights_flag=True)
    gene, view, init = _initial_learngene(s, cfg, teacher, dataset)
    note = seed_note(gene)
    if note and on_event and Dist.from_env().main:
        on_event(note=note)
    aux, identity = _aux_net(gene, s, cfg)
    started = time.time()
    summary = fit(aux, dataset, view, cfg, identity=identity, checkpoint=plan.checkpoint, resume=s.resume,
                  teacher=teacher, on_event=on_event, evaluate_on=evaluate_on)  # fmt: skip
    learned = aux.to("cpu").to_learngene()
    family = {**identity["family"], "images": aux.family_report()} if aux.family else None
    learned.meta.provenance.update(_provenance(plan, len(dataset.train), summary, init, family, started))
    ordering_images = 0
    if _orders(learned, s, aux.family):
        learned, ordered = order_learngene(learned, dataset, view, seed=cfg.seed)
        ordering_images = ordered["images"]
    if Dist.from_env().main:
        _save(learned, plan)
    ancestor_top1 = evaluate(teacher, evaluate_on, view) if evaluate_ancestor else None
    return {
        "output": str(s.output),
        "method": s.method,
        "init": init[0],
        "init_note": note,
        "params": learned.num_params(),
        "aux_depth": gene.arch.depth,
        "width": gene.arch.embed_dim,
        "aux_top1": summary["top1"],
        "ancestor_top1": ancestor_top1,
        "checkpoint": str(plan.checkpoint) if plan.checkpoint.exists() else None,
        "family_images": family and family["images"],
        "ordering_images": ordering_images,  # scored to order the channels (a forward and a backward each)
        **{k: v for k, v in summary.items() if k != "top1"},
    }


def _orders(gene, s: LearnConfig, family) -> bool:
    """Whether `learn` reorders the learngene's channels by importance (`lgtool.order`): by default, for a rule that
    narrows by selection, unless a family-aware learn trained a narrower width on the channels selection keeps now."""
    if s.keep_order or not RULES[gene.method].NARROWS_BY_SELECTION:
        return False
    return not any(a.embed_dim < gene.arch.embed_dim for a in family or [])


def _initial_learngene(s: LearnConfig, cfg: TrainConfig, teacher, dataset):
    """The learngene before training, for images as the ancestor sees them; with that view, and its init and why
    it was chosen (None where it was given)."""

    width = s.width or getattr(teacher, "embed_dim", "tiny")
    init, why = s.init, None
    if init is None:
        init, why = default_init(teacher, parse_width(width, s.num_heads)[0])
    if init == "ancestor" and not is_vit(teacher):
        raise InputError(
            f"--init ancestor seeds the templates from a ViT ancestor's blocks; {s.ancestor} has none: "
            "use --init official (the papers' initialization, everything learned by distillation)"
        )
    view = ancestor_view(teacher, dataset.view)
    if s.img_size:
        view.img_size = s.img_size
    gene = init_learngene(
        s.method,
        width=width,
        num_heads=s.num_heads,
        aux_depth=s.aux_depth,
        img_size=view.img_size,
        # a ViT ancestor's own patch size by default, so that its patch embedding can seed the learngene's
        patch_size=s.patch_size
        or (teacher.patch_embed.patch_size[0] if is_vit(teacher) else default_patch_size(view.img_size)),
        in_chans=view.in_chans,
        num_classes=dataset.num_classes,
        seed=cfg.seed,
        input=view.norm,
        **s.rule_options,
    )
    if init == "ancestor":
        gene = seed_from_ancestor(gene, teacher.state_dict())
    return gene, view, (init, why)


def _aux_net(gene, s: LearnConfig, cfg: TrainConfig):
    """The Aux-Net that trains `gene`, for the family's sizes too (each step through `family_samples` of them), and
    the identity a checkpoint of its training must match to be resumed."""

    targets = family_targets(gene, s.sizes)
    for arch in (gene.arch, targets[-1]):  # the Aux-Net, and the family's largest size
        what = "learn (the Aux-Net)" if arch == gene.arch else "learn (the family's largest size)"
        check_training_memory(arch, what, cfg.batch_size, cfg.weight_copies)
    gene = with_size_tensors(gene, targets)
    aux = build_aux(gene, drop_path_rate=cfg.drop_path, family=targets, samples=s.family_samples, seed=cfg.seed)
    identity = {"kind": "learn", "method": s.method, "arch": gene.arch.model_dump(), "rule": gene.rule.model_dump()}
    if aux.family:  # a resume must continue the same family (a family of the Aux size alone is plain learning)
        identity["family"] = {"sizes": [size_key(a) for a in aux.family], "samples": s.family_samples}
    return aux, identity


def _provenance(plan: LearnPlan, train_samples: int, summary: dict, init: tuple, family, started: float) -> dict:
    """What the learngene records of how it was learned."""

    s, cfg = plan.settings, plan.cfg
    init, why = init
    return dict(
        ancestor=s.ancestor,
        ancestor_weights=s.ancestor_weights,
        data=s.data,
        train_samples=train_samples,
        epochs=cfg.epochs,
        steps=summary["steps"],
        teacher_images=summary["teacher_images"],  # forwards it ran; repeated inputs came from its cache
        seed=cfg.seed,
        init=init,
        **({"init_why": why} if why else {}),
        batch_size=cfg.batch_size,
        lr=summary["lr"],
        recipe={k: getattr(cfg, k) for k in RECIPE_RECORD if getattr(cfg, k) not in (None, 0, 0.0, False)},
        kd=cfg.kd,
        alpha=cfg.alpha,
        tau=cfg.tau,
        kd_reduction=cfg.kd_reduction,
        aux_top1=summary["top1"],
        **({"family": family} if family else {}),
        lgtool_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    )


def _save(learned, plan: LearnPlan) -> None:
    try:
        learned.save(plan.settings.output)
    except WriteFailed as e:  # e.g. a full disk: the last checkpoint holds the finished training
        raise e.keeping(
            f"the training is kept in {plan.checkpoint}: write it with --resume {plan.checkpoint}"
        ) from None
    if not plan.keeps_checkpoint:  # the run is done: its default checkpoint would only be a leftover
        discard(plan.checkpoint)


def default_init(teacher, width: int) -> tuple[str, str]:
    """`learn`'s init when none is given, and why: templates seeded from the ancestor wherever it allows it (a
    ViT at least as wide as the learngene: seeding selects from its layers), since after a short learn they
    beat the papers' initialization (see CHANGELOG); else the papers' initialization."""

    if not is_vit(teacher):
        return "official", "the ancestor is not a ViT: it has no blocks to seed from"
    if teacher.embed_dim < width:
        return "official", f"the ancestor ({teacher.embed_dim} wide) is narrower than the learngene ({width})"
    return "ancestor", "seeded from the ancestor's layers (the default where the ancestor allows it)"
