"""`lgtool learn`: distil a learngene from an ancestor."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.cli.app import WRITES, app, emit, err, int_list, is_main, out
from lgtool.cli.options import train_options
from lgtool.cli.progress import Reporter
from lgtool.family import family_grid, parse_sizes
from lgtool.format.lazy import lazy
from lgtool.format.text import literal
from lgtool.rules import RULES
from lgtool.training.settings import TrainConfig

learning = lazy("lgtool.training.learn")


@app.command(epilog=WRITES)
@train_options(defaults_of="learn")
def learn(
    ancestor: str = typer.Option(
        ..., "--ancestor", help="fmnist-vit (shipped), a timm name or alias (deit_tiny|small|base), or a model folder."
    ),
    ancestor_weights: str | None = typer.Option(None, "--ancestor-weights", help="Weights file for --ancestor."),
    method: str = typer.Option("sws", "--method", "-m", help=f"One of {', '.join(RULES)}."),
    data: str = typer.Option("fashion-mnist", "--data", help="fashion-mnist or an ImageFolder path."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Where the Fashion-MNIST IDX files are."),
    width: str | None = typer.Option(None, "--width", "-w", help="Learngene width (default: the ancestor's)."),
    num_heads: int | None = typer.Option(None, "--num-heads", min=1, help="Heads at that width (default width/64)."),
    aux_depth: int | None = typer.Option(None, "--aux-depth", min=1, help="Aux-Net depth (TLEG/WAVE 12, SWS 16)."),
    stages: str | None = typer.Option(None, "--stages", help="SWS Aux stage sizes, e.g. 3,3,4,3,3."),
    template_size: int | None = typer.Option(
        None, "--template-size", min=1, help="WAVE template side (default head dim)."
    ),
    num_templates: int | None = typer.Option(None, "--num-templates", min=1, help="WAVE templates per matrix type."),
    img_size: int | None = typer.Option(None, "--img-size", min=1, help="Input size (default: the ancestor's)."),
    patch_size: int | None = typer.Option(
        None, "--patch-size", min=1, help="Patch size (default: a ViT ancestor's; else 16, or img/4 below 112 px)."
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="ancestor: templates seeded from the ancestor's own layers (SWS stage means, TLEG least-squares "
        "line, WAVE nearest-Kronecker templates); official: the papers' initialization. Default: ancestor where "
        "the ancestor is a ViT at least as wide as the learngene, else official.",
    ),
    family_depths: str | None = typer.Option(
        None,
        "--family-depths",
        help="Distil for this family of depths at once, e.g. 2-12 or 2,4,8 (default: the Aux depth alone).",
    ),
    family_widths: str | None = typer.Option(
        None, "--family-widths", help="And these widths, e.g. 32,64,128 (WAVE: each gets scalers of its own)."
    ),
    family_samples: int = typer.Option(
        3, "--family-samples", help="Sizes trained per step: the largest, the smallest and random others."
    ),
    train_samples: int | None = typer.Option(None, "--train-samples", min=1, help="A class-balanced training subset."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint path (default: OUTPUT with .ckpt)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue from this checkpoint."),
    output: Path = typer.Option(
        Path("learngene.safetensors"), "-o", "--output", help="The learngene file (its folder must exist)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing output, and start over instead of refusing an old checkpoint."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    cfg: TrainConfig = None,
):
    """Distil a learngene from an ancestor: train its templates through the Aux-Net by knowledge distillation.

    Examples:

        lgtool learn --ancestor deit_base --data /data/imagenet --width small

        lgtool learn --ancestor ancestor/ --method tleg --epochs 4 -o tleg.safetensors

        torchrun --nproc-per-node 8 -m lgtool learn --ancestor deit_base --data /data/imagenet
    """
    rule_options = {
        k: v for k, v in (("template_size", template_size), ("num_templates", num_templates)) if v is not None
    }
    with Reporter(f"learn {method}", err) as report:
        result = learning.learn(
            ancestor,
            method,
            data,
            output,
            ancestor_weights=ancestor_weights,
            data_dir=data_dir,
            width=width,
            num_heads=num_heads,
            aux_depth=aux_depth,
            stages=int_list(stages, "--stages"),
            img_size=img_size,
            patch_size=patch_size,
            train_samples=train_samples,
            checkpoint=checkpoint,
            resume=resume,
            log=report,
            cfg=cfg,
            init=init,
            force=force,
            family=family_grid(
                parse_sizes(family_depths, "--family-depths"), parse_sizes(family_widths, "--family-widths")
            ),
            family_samples=family_samples,
            **rule_options,
        )
    if is_main():
        emit(result, as_json, _render_learn)


def _render_learn(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['output'])}[/] — {r['method'].upper()} learngene, width {r['width']}, Aux depth "
        f"{r['aux_depth']}, {r['params']:,} parameters"
    )
    out.print(
        f"Aux-Net held-out top-1 {r['aux_top1']:.4f} (ancestor {r['ancestor_top1']:.4f}); {r['steps']} steps, "
        f"{r['images_per_s']:.0f} images/s, {r['train_seconds']:.0f} s, peak memory {r['peak_memory_mb']:.0f} MB"
    )
