"""`lgtool finetune`: train a Desc-Net (or a model from scratch) on data."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.cli.app import WRITES, app, emit, err, is_main, out
from lgtool.cli.options import train_options
from lgtool.cli.progress import Reporter
from lgtool.format.errors import UsageError
from lgtool.format.lazy import lazy
from lgtool.format.text import literal
from lgtool.training.settings import TrainConfig

finetuning = lazy("lgtool.training.finetune")


@app.command(epilog=WRITES)
@train_options
def finetune(
    src: str | None = typer.Argument(None, help="A Desc-Net or timm hub-layout folder (omit with --init scratch)."),
    data: str = typer.Option("fashion-mnist", "--data", help="fashion-mnist or an ImageFolder path."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Where the Fashion-MNIST IDX files are."),
    init: str = typer.Option("pretrained", "--init", help="pretrained (SRC's weights) or scratch (timm's init)."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", min=1, help="Re-initialize the head for this many classes."
    ),
    width: str = typer.Option("tiny", "--width", "-w", help="--init scratch: tiny, small, base or an integer."),
    depth: int = typer.Option(12, "--depth", "-d", min=1, help="--init scratch: number of blocks."),
    num_heads: int | None = typer.Option(None, "--num-heads", min=1, help="--init scratch: heads (default width/64)."),
    img_size: int | None = typer.Option(
        None, "--img-size", min=1, help="--init scratch: input size (default: the data's)."
    ),
    patch_size: int | None = typer.Option(None, "--patch-size", min=1, help="--init scratch: patch size."),
    ancestor: str | None = typer.Option(
        None, "--ancestor", help="Distil from this teacher while training (fmnist-vit, a timm name or a folder)."
    ),
    train_samples: int | None = typer.Option(None, "--train-samples", min=1, help="A class-balanced training subset."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue from this checkpoint (OUT/checkpoint.ckpt)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for best/, last/, checkpoint and metrics."),
    force: bool = typer.Option(False, "--force", help="Write into an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    cfg: TrainConfig = None,
):
    """Fine-tune a Desc-Net (or train a ViT from scratch) and write OUT/best/ and OUT/last/ for plain timm.

    Examples:

        lgtool finetune desc-d9-small --data /data/cifar100 --num-classes 100 --epochs 10 -o tuned/

        lgtool finetune --init scratch --width 128 --num-heads 2 --depth 6 --epochs 5 --lr 2e-3 -o ancestor/

        lgtool finetune --init scratch --width 64 --depth 6 --ancestor fmnist-vit --lr 2e-3 -o kd-scratch/
    """
    if init not in ("pretrained", "scratch"):
        raise UsageError(f"unknown --init {init!r}: choose pretrained or scratch")
    with Reporter(f"finetune {src or init}", err) as report:
        result = finetuning.finetune(
            src,
            data,
            output,
            init=init,
            data_dir=data_dir,
            num_classes=num_classes,
            width=width,
            depth=depth,
            num_heads=num_heads,
            img_size=img_size,
            patch_size=patch_size,
            train_samples=train_samples,
            cfg=cfg,
            ancestor=ancestor,
            resume=resume,
            force=force,
            log=report,
        )
    if is_main():
        emit(result, as_json, _render_finetune)


def _render_finetune(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['best'])}[/] (best held-out top-1 {r['best_top1']:.4f}, epoch {r['best_epoch']}) "
        f"and {literal(r['last'])}; {r['params']:,} parameters, {r['steps']} steps, {r['images_per_s']:.0f} images/s, "
        f"{r['train_seconds']:.0f} s"
    )
