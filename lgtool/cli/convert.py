"""`lgtool convert`: an Aux-Net trained with the papers' official code to a learngene."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.base.lazy import lazy
from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, dry_run_option, emit, out, plural, show_plan
from lgtool.cli.options import takes
from lgtool.convert.settings import ConvertConfig

converting = lazy("lgtool.convert")


@app.command(epilog=SEE_EXIT_CODES)
@takes(ConvertConfig)
def convert(
    ckpt: Path = typer.Argument(..., help="An official Aux-Net checkpoint.pth, or its state dict (.pth/.safetensors)."),
    output: Path = typer.Option(
        Path("learngene.safetensors"), "-o", "--output", help="The learngene file (its folder must exist)."
    ),
    cfg: ConvertConfig = None,
    ema: bool = typer.Option(False, "--ema", help="Convert the checkpoint's model_ema weights instead of model."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    dry_run: bool = dry_run_option(reads="(the checkpoint is read: its tensors are what is checked)"),
):
    """Convert an Aux-Net trained with the papers' official code (eddiexia98/SWS, Robbo4729/MaskLG) into a learngene.

    Loads safely: tensors, containers and argparse.Namespace only; nothing pickled runs.

    Examples:

        lgtool convert output/aux_s/checkpoint.pth -o sws-aux-s.safetensors

        lgtool convert tleg_aux_b.pth --ema -o tleg-b.safetensors && lgtool expand tleg-b.safetensors --depth 9

        lgtool convert output/aux_s/checkpoint.pth -o sws-aux-s.safetensors --dry-run
    """
    options = {**vars(cfg), "ema": ema, "force": force}
    if dry_run:
        return show_plan(
            lambda: converting.plan_convert(ckpt, output, **options), as_json, _planned, read="the checkpoint was read"
        )
    emit(converting.convert(ckpt, output, **options), as_json, _render_convert)


def _render_convert(r: dict) -> None:
    out.print(f"wrote [bold]{r['output']}[/] — {_learngene(r)}")
    for note in r["differences"]:
        out.print(f"differs from the source: {literal(note)}")


def _planned(r: dict) -> str:
    return f"write [bold]{literal(r['output'])}[/] — {_learngene(r)}"


def _learngene(r: dict) -> str:
    rule = ", ".join(f"{k}={v}" for k, v in r["rule"].items() if k != "method")
    epoch = f", epoch {r['epoch']}" if r.get("epoch") is not None else ""
    return (
        f"{r['method'].upper()} learngene from an Aux-Net of {r['repository']} ({r['weights']}{epoch}): width "
        f"{r['width']} ({plural(r['num_heads'], 'head')}), Aux depth {r['aux_depth']}, {r['num_classes']} classes, "
        f"{r['params']:,} parameters" + (f"; {rule}" if rule else "")
    )
