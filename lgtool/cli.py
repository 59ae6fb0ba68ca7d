"""The `lgtool` command line: parse, call the library, print. No learning logic lives here.

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 input invalid or missing, 4 a --check failed.
With --json, stdout holds exactly one JSON object; logs and progress go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lgtool import __version__
from lgtool.arch import SLOTS
from lgtool.errors import CheckError, InputError, LgtoolError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
    help="Build families of Vision Transformers of many sizes from one compact learngene (SWS, TLEG, WAVE).",
)
out = Console()
err = Console(stderr=True)


def _version(value: bool):
    if value:
        print(f"lgtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    pass


def _emit(result: dict, as_json: bool, render) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render(result)


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 0,0,1,1,2") from None


@app.command()
def expand(
    gene: Path = typer.Argument(Path("learngene.safetensors"), help="The learngene file."),
    depth: int | None = typer.Option(None, "--depth", "-d", help="Desc-Net depth (default: the Aux depth)."),
    width: str | None = typer.Option(
        None, "--width", "-w", help="tiny, small, base or an integer (default: the Aux width)."
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="Classes of the new head (fresh init if it differs)."
    ),
    layer_map: str | None = typer.Option(
        None, "--layer-map", help="SWS only: the stage of every layer, e.g. 0,0,1,1,2."
    ),
    check: bool = typer.Option(False, "--check", help="Reload with plain timm and compare logits; exit 4 above --tol."),
    tol: float = typer.Option(1e-5, "--tol", help="Tolerance of --check (max abs logit difference)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder (default: desc-d<depth>-<width>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Expand a learngene into a Desc-Net folder (model.safetensors, config.json, README.md) that plain timm loads.

    Examples:

        lgtool expand --depth 9 --width small

        lgtool expand gene.safetensors --depth 12 --num-classes 100 --check -o desc12/
    """
    from lgtool.descnet import check_descnet, lineage, write_descnet
    from lgtool.learngene import load_learngene
    from lgtool.materialize import expand as expand_gene
    from lgtool.materialize import target_arch

    lgene = load_learngene(gene)
    stages = _int_list(layer_map, "--layer-map")
    target = target_arch(lgene, depth, width, num_classes, stages)
    output = output or Path(f"desc-d{target.depth}-{width or target.embed_dim}")
    if output.exists() and not force:
        raise InputError(f"{output} already exists; choose another -o or pass --force to replace it")
    model = expand_gene(lgene, target.depth, target.embed_dim, target.num_classes, stages)
    info = lineage(lgene, gene, target, stages)
    write_descnet(model, target, output, lgene.meta.input.model_dump(), info, force=force)
    result = {
        "output": str(output),
        "method": lgene.method,
        "depth": target.depth,
        "width": target.embed_dim,
        "num_heads": target.num_heads,
        "num_classes": target.num_classes,
        "params": target.num_params(),
        "layers": info["layers"],
        "head": info["head"],
    }
    if check:
        at_aux = (target.depth, target.embed_dim, target.num_classes) == (
            lgene.arch.depth,
            lgene.arch.embed_dim,
            lgene.arch.num_classes,
        ) and stages is None
        diffs = check_descnet(output, model, lgene if at_aux else None)
        result["check"] = {**diffs, "tol": tol, "passed": all(v <= tol for v in diffs.values())}
    _emit(result, as_json, _render_expand)
    if check and not result["check"]["passed"]:
        raise CheckError(f"--check failed: max abs difference {max(diffs.values()):.3g} > {tol:g}")


def _render_expand(r: dict) -> None:
    out.print(
        f"wrote [bold]{r['output']}/[/] — {r['method'].upper()} Desc-Net, depth {r['depth']}, "
        f"width {r['width']} ({r['num_heads']} heads), {r['num_classes']} classes, {r['params']:,} parameters"
    )
    out.print(f"layers from: {r['layers']}")
    out.print(f"head: {r['head']}")
    if "check" in r:
        c = r["check"]
        diffs = ", ".join(f"{k.removeprefix('max_abs_diff_')} {v:.2e}" for k, v in c.items() if k.startswith("max_abs"))
        out.print(
            f"check: max abs logit difference vs {diffs} (tol {c['tol']:g}) — "
            + ("[green]passed[/]" if c["passed"] else "[red]FAILED[/]")
        )


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A learngene .safetensors file or a Desc-Net folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Show what a learngene or Desc-Net holds, from file headers only (no weights are loaded).

    Examples:

        lgtool inspect learngene.safetensors

        lgtool inspect desc-d9-small/ --json | jq .params
    """
    from lgtool.summary import summarize

    info = summarize(path)
    _emit(info, as_json, _render_learngene if info["kind"] == "learngene" else _render_descnet)


def _render_learngene(s: dict) -> None:
    a = s["arch"]
    out.print(f"[bold]{s['path']}[/]: {s['method'].upper()} learngene ({s['schema']})")
    out.print(
        f"Aux-Net: depth {s['aux_depth']}, width {a['embed_dim']}, {a['num_heads']} heads, "
        f"{a['img_size']}px / patch {a['patch_size']}, {a['in_chans']} channels, {a['num_classes']} classes"
    )
    rule = {k: v for k, v in s["rule"].items() if k != "method" and "{" not in str(v)}
    out.print("rule: " + ", ".join(f"{k}={v}" for k, v in rule.items()))
    # Block templates as a slot x group grid (stage0.., intercept/slope, template/scaler/layerwise).
    block = [t for t in s["tensors"] if "slot" in t["role"]]
    groups = list(dict.fromkeys(t["name"].split(".", 1)[0] for t in block))
    grid = Table(title="block templates", show_edge=False, header_style="bold")
    grid.add_column("slot")
    for g in groups:
        grid.add_column(g)
    slots = [slot for slot in SLOTS if any(t["role"]["slot"] == slot for t in block)]
    shape = {(t["name"].split(".", 1)[0], t["role"]["slot"]): "×".join(map(str, t["shape"])) for t in block}
    for slot in slots:
        grid.add_row(slot, *(shape.get((g, slot), "") for g in groups))
    out.print(grid)
    other = Table(title="non-block tensors (copied into every Desc-Net)", show_edge=False, header_style="bold")
    other.add_column("tensor")
    other.add_column("shape")
    for t in s["tensors"]:
        if "slot" not in t["role"]:
            other.add_row(t["name"], "×".join(map(str, t["shape"])))
    out.print(other)
    out.print("dtypes: " + ", ".join(sorted({t["dtype"] for t in s["tensors"]})))
    d = s["depths"]
    out.print(f"parameters: {s['params']:,} ({s['file_bytes'] / 1e6:.2f} MB on disk)")
    out.print(f"makes depths: {d['min']}..{d['max'] or 'any'}; widths: {s['widths']}")
    lo, hi = s["storage_ratio_depths"]
    out.print(f"storage ratio: {s['storage_ratio']}× (Desc-Nets of depths {lo}..{hi} / learngene parameters)")
    if s["provenance"]:
        out.print("provenance: " + ", ".join(f"{k}={v}" for k, v in s["provenance"].items()))


def _render_descnet(s: dict) -> None:
    args = s["model_args"]
    out.print(f"[bold]{s['path']}[/]: timm {s['architecture']} folder")
    out.print(", ".join(f"{k}={v}" for k, v in args.items()))
    out.print(
        f"parameters: {s['params']:,} in {s['tensors']} tensors ({', '.join(s['dtypes'])}, "
        f"{s['file_bytes'] / 1e6:.2f} MB)"
    )
    lg = s.get("lgtool")
    if lg:
        out.print(
            f"from: {lg.get('method', '?').upper()} learngene {lg.get('learngene')} "
            f"(sha256 {str(lg.get('learngene_sha256', ''))[:12]}…); head {lg.get('head')}"
        )
        out.print(f"layers ({lg.get('layer_source')}): {lg.get('layers')}")


def main() -> None:
    try:
        app()
    except LgtoolError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
