"""`lgtool convert`: an Aux-Net trained with the papers' official code to a learngene."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.base.lazy import lazy
from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, dry_run_option, emit, int_list, out, plural, show_plan
from lgtool.rules import declared_options

converting = lazy("lgtool.convert")


def _official_help(name: str) -> str:
    """A rule option's help as `convert` reads it: its declaration, and where the checkpoint gives it instead."""
    option = declared_options()[name]
    return f"{option.help.removesuffix('.')} (default: {option.official})."


@app.command(epilog=SEE_EXIT_CODES)
def convert(
    ckpt: Path = typer.Argument(..., help="An official Aux-Net checkpoint.pth, or its state dict (.pth/.safetensors)."),
    output: Path = typer.Option(
        Path("learngene.safetensors"), "-o", "--output", help="The learngene file (its folder must exist)."
    ),
    method: str | None = typer.Option(None, "--method", "-m", help="sws or tleg (default: detected from the keys)."),
    stages: str | None = typer.Option(None, "--stages", help=_official_help("stages")),
    aux_depth: int | None = typer.Option(
        None, "--aux-depth", min=1, help="TLEG Aux depth (default: from args.model, else the official 12)."
    ),
    num_heads: int | None = typer.Option(
        None, "--num-heads", min=1, help="The Aux-Net's heads, when the checkpoint's args do not say them."
    ),
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
    options = dict(
        method=method,
        stages=int_list(stages, "--stages"),
        aux_depth=aux_depth,
        num_heads=num_heads,
        ema=ema,
        force=force,
    )
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
