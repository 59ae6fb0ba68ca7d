"""A new size's own numbers learned on a few images, everything shared frozen: WAVE's scalers (`calibrate`), or
a Desc-Net's norms and biases for a rule whose sizes share all their tensors (`calibrate_descnet`). `calibrated_desc`
is `expand --calibrate`: whichever the rule has."""

from __future__ import annotations

from lgtool.base.arch import Arch
from lgtool.base.errors import InputError
from lgtool.family import resize_gene
from lgtool.learngene import Learngene
from lgtool.materialize import build_aux, desc_tensors, expand
from lgtool.rules import RULES
from lgtool.training.data import View, load_data
from lgtool.training.loop import TrainConfig, evaluate, fit

SCALERS_LR = 1e-2  # WAVE's scalers (the bench's calibration rate)
# Norms and biases: the better of 0.01 and 0.03 on the zero-shot study's validation, averaged over its sizes and
# seeds (docs/zero-shot): 5 points better at a narrower width, within a point of 0.01 elsewhere.
NORMS_LR = 3e-2


def calibrated_desc(gene: Learngene, target: Arch, data: str, *, data_dir=None, samples: int = 2000,
                    steps: int = 200, lr: float | None = None, on_event=None) -> tuple[dict, dict]:  # fmt: skip
    """The Desc-Net `target`'s tensors after calibrating what is its own on `samples` training images of `data`:
    WAVE's scalers (at the learngene's resolution), or its norms and biases (SWS, TLEG); and what was learned."""
    if RULES[gene.method].SIZE_SPECIFIC:
        at_aux = Arch.checked(target, img_size=gene.arch.img_size)
        calibrated, info = calibrate(gene, at_aux, data, data_dir=data_dir, samples=samples, steps=steps,
                                     lr=lr or SCALERS_LR, on_event=on_event)  # fmt: skip
        return desc_tensors(calibrated, target), {"learned": "scalers", **info}
    dataset = load_data(data, data_dir, samples)
    model = expand(gene, target)
    view = View(target.img_size, target.in_chans, gene.meta.input)
    before = evaluate(model, dataset.test, view)
    after = calibrate_descnet(model, dataset, view, steps=steps, lr=lr or NORMS_LR, on_event=on_event)
    info = {"top1_before": before, "top1_after": after["top1"], "steps": after["steps"], "images": after["images"]}
    return model.state_dict(), {"learned": NORMS_AND_BIASES, **info}


def calibrate(
    gene: Learngene,
    target: Arch,
    data: str = "fashion-mnist",
    *,
    data_dir: str | None = None,
    dataset=None,
    samples: int = 2000,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    on_event=None,
    measure_before: bool = True,
    evaluate_on=None,
) -> tuple[Learngene, dict]:
    """Learn the size-specific tensors of `target` (WAVE's scalers) on a few images, templates and all else
    frozen. `target` comes from `family.target_arch`.

    `dataset` (already loaded, its train split the calibration images) replaces `data` and `samples`. Top-1 before
    and after is measured on `evaluate_on` (default: the dataset's test split)."""
    rules = RULES[gene.method]
    if not rules.SIZE_SPECIFIC:
        raise InputError(f"--calibrate learns a size's own tensors; a {gene.method.upper()} learngene has none")
    dataset = dataset or load_data(data, data_dir, samples, seed=seed)
    resized = resize_gene(gene, target)
    view = View(target.img_size, target.in_chans, gene.meta.input)
    learned = {name for name, role in resized.meta.tensors.items() if role.get("template") in rules.SIZE_SPECIFIC}
    aux = build_aux(resized)
    evaluate_on = dataset.test if evaluate_on is None else evaluate_on
    before = evaluate(aux, evaluate_on, view) if measure_before else None

    def own(name: str) -> bool:
        return name.removeprefix("gene.") in learned

    summary = _few_steps(aux, dataset, view, "calibrate", own, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         evaluate_on=evaluate_on, on_event=on_event)  # fmt: skip
    calibrated = aux.to("cpu").to_learngene()
    calibrated.meta.provenance.update(
        calibration={"data": data, "samples": len(dataset.train), "steps": summary["steps"]}
    )
    info = {"top1_before": before, "top1_after": summary["top1"], "steps": summary["steps"]}
    return calibrated, {**info, "images": summary["images_seen"]}


NORMS_AND_BIASES = "norms and biases"  # what `calibrate_descnet` learns, as results and provenance name it


def is_norm_or_bias(name: str) -> bool:
    """A LayerNorm's scale or shift, or any layer's bias: the few numbers a Desc-Net's size can shift (the
    statistics a depth or a narrower residual stream changes) without touching the shared matrices."""
    leaf = name.rsplit(".", 2)
    return name.endswith(".bias") or (len(leaf) >= 2 and "norm" in leaf[-2])


def calibrate_descnet(model, dataset, view, *, steps: int = 200, batch_size: int = 64, lr: float = NORMS_LR,
                      seed: int = 0, evaluate_on=None, on_event=None) -> dict:  # fmt: skip
    """Relearn a Desc-Net's norms and biases (`is_norm_or_bias`) on `dataset.train` for `steps` steps with every
    matrix frozen, in place: a cheap per-size calibration for a rule whose sizes share all their tensors (SWS,
    TLEG). Returns the images it trained on and its top-1 on `evaluate_on` (default: the dataset's test split)."""
    evaluate_on = dataset.test if evaluate_on is None else evaluate_on
    summary = _few_steps(model, dataset, view, "calibrate-descnet", is_norm_or_bias, steps=steps, batch_size=batch_size,
                         lr=lr, seed=seed, evaluate_on=evaluate_on, on_event=on_event)  # fmt: skip
    model.eval()
    return {"top1": summary["top1"], "steps": summary["steps"], "images": summary["images_seen"]}


def _few_steps(model, dataset, view, kind: str, trainable, *, steps, batch_size, lr, seed, evaluate_on, on_event):
    """`steps` steps of the parameters `trainable` names, at a constant rate with no weight decay, on labels;
    `fit`'s summary, top-1 measured once at the end on `evaluate_on`."""
    batch_size = min(batch_size, len(dataset.train))
    epochs = -(-steps // (len(dataset.train) // batch_size))
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, warmup_epochs=0.0, kd="none", max_steps=steps,
        eval_each_epoch=False, seed=seed, log_every=max(1, steps // 10),
    )  # fmt: skip
    return fit(model, dataset, view, cfg, identity={"kind": kind}, on_event=on_event, evaluate_on=evaluate_on,
               trainable=trainable)  # fmt: skip
