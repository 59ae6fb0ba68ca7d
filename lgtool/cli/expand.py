"""`lgtool expand`: a learngene to a Desc-Net folder that plain timm loads."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.cli.app import WRITES, app, emit, err, out, plural
from lgtool.cli.options import takes
from lgtool.cli.progress import Reporter
from lgtool.format.text import literal
from lgtool.training.expand import ExpandConfig, expand_folder


@app.command(epilog=WRITES)
@takes(ExpandConfig)
def expand(
    gene: Path = typer.Argument(Path("learngene.safetensors"), help="The learngene file."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder (default: desc-d<depth>-<width>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    cfg: ExpandConfig = None,
):
    """Expand a learngene into a Desc-Net folder (model.safetensors, config.json, README.md) that plain timm loads.

    Examples:

        lgtool expand --depth 9 --width small

        lgtool expand gene.safetensors --depth 12 --num-classes 100 --check -o desc12/

        lgtool expand base-gene.safetensors --depth 9 --width small --num-heads 6 -o desc-d9-small/
    """
    emit(expand_folder(gene, output, cfg, force=force, log=_calibration_reporter), as_json, _render_expand)


def _calibration_reporter():
    return Reporter("calibrate", err)


def _render_expand(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['output'])}/[/] — {r['method'].upper()} Desc-Net, depth {r['depth']}, "
        f"width {r['width']} ({plural(r['num_heads'], 'head')}), {r['num_classes']} classes, "
        f"{r['params']:,} parameters"
    )
    out.print(f"layers from: {literal(r['layers'])}")
    if "selection" in r:
        out.print(f"width {r['width']}: {literal(r['width_source'])}")
    if "size_specific" in r:
        out.print(f"scalers: {literal(r['size_specific'])}")
    out.print(f"head: {literal(r['head'])}")
    if "check" in r:
        c = r["check"]
        diffs = ", ".join(f"{k.removeprefix('max_abs_diff_')} {v:.2e}" for k, v in c.items() if k.startswith("max_abs"))
        out.print(
            f"check: max abs logit difference vs {diffs} (tol {c['tol']:g}) — "
            + ("[green]passed[/]" if c["passed"] else "[red]FAILED[/]")
        )
