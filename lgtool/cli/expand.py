"""`lgtool expand`: a learngene (or, by weight selection, a larger ViT) to a Desc-Net folder that plain timm loads."""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, dry_run_option, emit, err, out, plural, show_plan
from lgtool.cli.options import takes
from lgtool.cli.progress import Reporter
from lgtool.training.descnet import ExpandConfig, expand_folder, plan_expand
from lgtool.training.selection import plan_selection, select_folder

DEFAULT_GENE = Path("learngene.safetensors")


@app.command(epilog=SEE_EXIT_CODES)
@takes(ExpandConfig)
def expand(
    gene: Path | None = typer.Argument(
        None, help=f"The learngene file (default: {DEFAULT_GENE}; none with --ancestor).", show_default=False
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder (default: desc-d<depth>-<width>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    dry_run: bool = dry_run_option(),
    cfg: ExpandConfig = None,
):
    """Expand a learngene into a Desc-Net folder (model.safetensors, config.json, README.md) that plain timm loads;
    or, with --ancestor, cut one from a larger ViT by weight selection, as the bench's weight-selection rows start.

    Examples:

        lgtool expand --depth 9 --width small

        lgtool expand gene.safetensors --depth 12 --num-classes 100 --check -o desc12/

        lgtool expand base-gene.safetensors --depth 9 --width small --num-heads 6 -o desc-d9-small/

        lgtool expand --ancestor fmnist-vit --depth 4 --width 64 --layers first -o ws-d4-64/
    """
    from_gene = cfg.ancestor is None or gene is not None  # both given: the learngene's plan refuses the mix
    if dry_run:
        plan_of = (
            (lambda: plan_expand(gene or DEFAULT_GENE, output, cfg, force=force))
            if from_gene
            else (lambda: plan_selection(output, cfg, force=force))
        )
        return show_plan(plan_of, as_json, _planned, read="no weights read")
    if from_gene:
        result = expand_folder(gene or DEFAULT_GENE, output, cfg, force=force, progress=_reporter)
    else:
        result = select_folder(output, cfg, force=force)
    emit(result, as_json, _render_expand)


def _reporter():
    return Reporter("calibrate", err)


def _planned(r: dict) -> str:
    source = (
        f"{r['method'].upper()} learngene" if r["route"] == "learngene" else f"weight selection from {r['ancestor']}"
    )
    return (
        f"write [bold]{literal(r['output'])}/[/] ({literal(', '.join(r['files']))}) by {literal(source)}: "
        f"depth {r['depth']}, width {r['width']} ({plural(r['num_heads'], 'head')}), {r['num_classes']} classes, "
        f"{r['params']:,} parameters"
    )


def _render_expand(r: dict) -> None:
    made = f"{r['method'].upper()} Desc-Net" if "method" in r else f"Desc-Net cut from {literal(r['ancestor'])}"
    out.print(
        f"wrote [bold]{literal(r['output'])}/[/] — {made}, depth {r['depth']}, "
        f"width {r['width']} ({plural(r['num_heads'], 'head')}), {r['num_classes']} classes, "
        f"{r['params']:,} parameters"
    )
    if "layer_policy" in r:
        out.print(f"layers from ancestor blocks ({literal(r['layer_policy'])}): {literal(r['layers'])}")
    else:
        out.print(f"layers from: {literal(r['layers'])}")
    if "selection" in r or "layer_policy" in r:
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
