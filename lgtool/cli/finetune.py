"""`lgtool finetune`: train a Desc-Net (or a model from scratch) on data."""

from __future__ import annotations

import typer

from lgtool.base.lazy import lazy
from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, data_words, dry_run_option, emit, err, is_main, out, plural, show_plan
from lgtool.cli.options import takes, train_options
from lgtool.cli.progress import Reporter
from lgtool.training.settings import FinetuneConfig, TrainConfig

finetuning = lazy("lgtool.training.finetune")


@app.command(epilog=SEE_EXIT_CODES)
@takes(FinetuneConfig, name="settings")
@train_options
def finetune(
    settings: FinetuneConfig = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    dry_run: bool = dry_run_option(),
    cfg: TrainConfig = None,
):
    """Fine-tune a Desc-Net (or train a ViT from scratch) and write OUT/best/ and OUT/last/ for plain timm.

    Examples:

        lgtool finetune desc-d9-small --data /data/cifar100 --num-classes 100 --epochs 10 -o tuned/

        lgtool finetune --init scratch --width 128 --num-heads 2 --depth 6 --epochs 5 --lr 2e-3 -o ancestor/

        lgtool finetune --init scratch --width 64 --depth 6 --ancestor fmnist-vit --lr 2e-3 -o kd-scratch/

        lgtool finetune desc-d9-small --data /data/cifar100 --num-classes 100 -o tuned/ --dry-run --json
    """
    if dry_run:
        return show_plan(lambda: finetuning.plan_finetune(settings, cfg), as_json, _planned)
    with Reporter(f"finetune {settings.src or settings.init}", err) as report:
        result = finetuning.finetune(settings, cfg, on_event=report)
    if is_main():
        emit(result, as_json, _render_finetune)


def _render_finetune(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['best'])}[/] (best held-out top-1 {r['best_top1']:.4f}, epoch {r['best_epoch']}) "
        f"and {literal(r['last'])}; {r['params']:,} parameters, {r['steps']} steps, {r['images_per_s']:.0f} images/s, "
        f"{r['train_seconds']:.0f} s"
    )


def _planned(p: dict) -> str:
    what = f"fine-tune {literal(p['source'])}" if p["source"] else "train a ViT from timm's init"
    classes = f"{p['num_classes']} classes" if p["num_classes"] else "the data's classes"
    teacher = f", distilled from {literal(p['teacher'])} ({p['kd']} KD)" if p["teacher"] else ""
    resume = f", continuing {p['resume']}" if p["resume"] else ""
    return (
        f"{what} (width {p['width']}, depth {p['depth']}, {classes}) for {plural(p['epochs'], 'epoch')} on "
        f"{literal(data_words(p))}{teacher}{literal(resume)} into [bold]{literal(p['output'])}/[/] "
        f"({', '.join(p['writes'])})"
    )
