"""A new size's own tensors (WAVE's scalers) learned on a few images with the templates frozen."""

from __future__ import annotations

from lgtool.base.arch import Arch
from lgtool.base.errors import InputError
from lgtool.family import resize_gene
from lgtool.learngene import Learngene
from lgtool.materialize import build_aux
from lgtool.rules import RULES
from lgtool.training.data import View, load_data
from lgtool.training.loop import TrainConfig, evaluate, fit


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
    batch_size = min(batch_size, len(dataset.train))
    epochs = -(-steps // (len(dataset.train) // batch_size))
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, warmup_epochs=0.0, kd="none", max_steps=steps,
        eval_each_epoch=False, seed=seed, log_every=max(1, steps // 10),
    )  # fmt: skip
    summary = fit(aux, dataset, view, cfg, identity={"kind": "calibrate"}, on_event=on_event, evaluate_on=evaluate_on,
                  trainable=lambda n: n.removeprefix("gene.") in learned)  # fmt: skip
    calibrated = aux.to("cpu").to_learngene()
    calibrated.meta.provenance.update(
        calibration={"data": data, "samples": len(dataset.train), "steps": summary["steps"]}
    )
    info = {"top1_before": before, "top1_after": summary["top1"], "steps": summary["steps"]}
    return calibrated, {**info, "images": summary["images_seen"]}
