"""`lgtool expand`: a learngene to a Desc-Net folder that plain timm loads."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from lgtool.cli.app import WRITES, app, emit, err, int_list, out, plural
from lgtool.cli.progress import Reporter
from lgtool.format.errors import UsageError
from lgtool.format.lazy import lazy
from lgtool.format.text import literal

expanding = lazy("lgtool.training.descnet")


@app.command(epilog=WRITES)
def expand(
    gene: Path = typer.Argument(Path("learngene.safetensors"), help="The learngene file."),
    depth: int | None = typer.Option(None, "--depth", "-d", min=1, help="Desc-Net depth (default: the Aux depth)."),
    width: str | None = typer.Option(
        None,
        "--width",
        "-w",
        help="tiny, small, base or an integer (default: the Aux width). SWS/TLEG: narrower widths by evenly spaced "
        "selection, heads kept; WAVE: any multiple of its template size.",
    ),
    num_heads: int | None = typer.Option(
        None,
        "--num-heads",
        min=1,
        help="Attention heads of the Desc-Net (default: the learngene's; WAVE at another width keeps the head dim). "
        "The weights are the same for any count that divides the width.",
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", min=1, help="Classes of the new head (fresh init if it differs)."
    ),
    layer_map: str | None = typer.Option(
        None, "--layer-map", help="SWS only: the stage of every layer, e.g. 0,0,1,1,2."
    ),
    img_size: int | None = typer.Option(
        None, "--img-size", min=1, help="Input resolution (default: the learngene's); position embedding resampled."
    ),
    check: bool = typer.Option(False, "--check", help="Reload with plain timm and compare logits; exit 4 above --tol."),
    tol: float = typer.Option(1e-5, "--tol", min=0.0, help="Tolerance of --check (max abs logit difference)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder (default: desc-d<depth>-<width>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
    calibrate: str | None = typer.Option(None, "--calibrate", help="WAVE: learn this size's scalers on DATA first."),
    calibrate_steps: int = typer.Option(200, "--calibrate-steps", min=1, help="Optimizer steps of --calibrate."),
    calibrate_samples: int = typer.Option(2000, "--calibrate-samples", min=1, help="Images --calibrate trains on."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Where the Fashion-MNIST IDX files are."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Expand a learngene into a Desc-Net folder (model.safetensors, config.json, README.md) that plain timm loads.

    Examples:

        lgtool expand --depth 9 --width small

        lgtool expand gene.safetensors --depth 12 --num-classes 100 --check -o desc12/

        lgtool expand base-gene.safetensors --depth 9 --width small --num-heads 6 -o desc-d9-small/
    """
    if not math.isfinite(tol):
        raise UsageError(f"--tol must be a finite number, got {tol}")
    result = expanding.expand_folder(
        gene,
        output,
        depth=depth,
        width=width,
        num_classes=num_classes,
        layer_map=int_list(layer_map, "--layer-map"),
        img_size=img_size,
        num_heads=num_heads,
        check=check,
        tol=tol,
        force=force,
        calibrate=calibrate,
        calibrate_steps=calibrate_steps,
        calibrate_samples=calibrate_samples,
        data_dir=data_dir,
        log=_calibration_reporter,
    )
    emit(result, as_json, _render_expand)


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
