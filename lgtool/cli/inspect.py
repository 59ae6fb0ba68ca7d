"""`lgtool inspect`: what a learngene or a Desc-Net holds, from file headers only (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lgtool.base.arch import SLOTS
from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, emit, out, plural
from lgtool.hub import WEIGHT_SELECTION
from lgtool.summary import summarize


@app.command(epilog=SEE_EXIT_CODES)
def inspect(
    path: Path = typer.Argument(..., help="A learngene .safetensors file or a Desc-Net folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Show what a learngene or Desc-Net holds, from file headers only (no weights are loaded).

    Examples:

        lgtool inspect learngene.safetensors

        lgtool inspect desc-d9-small/ --json | jq .params
    """
    info = summarize(path)
    emit(info, as_json, _render_learngene if info["kind"] == "learngene" else _render_descnet)


def _render_learngene(s: dict) -> None:
    a = s["arch"]
    out.print(f"[bold]{literal(s['path'])}[/]: {literal(s['method'].upper())} learngene ({literal(s['schema'])})")
    out.print(
        f"Aux-Net: depth {s['aux_depth']}, width {a['embed_dim']}, {plural(a['num_heads'], 'head')}, "
        f"{a['img_size']}px / patch {a['patch_size']}, {plural(a['in_chans'], 'channel')}, {a['num_classes']} classes"
    )
    rule = {k: v for k, v in s["rule"].items() if k != "method"}
    out.print("rule: " + ", ".join(f"{literal(k)}={literal(v)}" for k, v in rule.items()))
    # Block templates as a slot x group grid (stage0.., intercept/slope, template/scaler/layerwise).
    block = [t for t in s["tensors"] if "slot" in t["role"] and "size" not in t["role"]]
    groups = list(dict.fromkeys(t["name"].split(".", 1)[0] for t in block))
    grid = Table(title="block templates", show_edge=False, header_style="bold")
    grid.add_column("slot")
    for g in groups:
        grid.add_column(literal(g))
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
            other.add_row(literal(t["name"]), "×".join(map(str, t["shape"])))
    out.print(other)
    if s.get("sizes"):
        sizes = ", ".join(f"d{d} w{w}" for d, w in s["sizes"])
        out.print(f"sizes trained with tensors of their own (expand there needs no calibration): {sizes}")
    out.print("dtypes: " + ", ".join(literal(d) for d in sorted({t["dtype"] for t in s["tensors"]})))
    d = s["depths"]
    out.print(f"parameters: {s['params']:,} ({s['file_bytes'] / 1e6:.2f} MB on disk)")
    narrower = s.get("narrower_widths")
    if narrower:
        out.print(
            f"makes depths: {d['min']}..{d['max'] or 'any'}; widths: {s['widths']}, and by {narrower['by']} any width "
            f"up to {narrower['max']} that is a multiple of {narrower['multiple_of']} (its heads; any width with "
            "expand --num-heads)"
        )
    else:
        out.print(f"makes depths: {d['min']}..{d['max'] or 'any'}; widths: {s['widths']}")
    notes = (s.get("provenance") or {}).get("differences")
    if isinstance(notes, list) and notes:
        out.print("differences from the source: " + literal("; ".join(map(str, notes))))
    lo, hi = s["storage_ratio_depths"]
    out.print(f"storage ratio: {s['storage_ratio']}× (Desc-Nets of depths {lo}..{hi} / learngene parameters)")
    if s["provenance"]:  # its differences are on their own line above
        shown = {k: v for k, v in s["provenance"].items() if k != "differences"}
        out.print("provenance: " + ", ".join(f"{literal(k)}={literal(v)}" for k, v in shown.items()))


def _render_descnet(s: dict) -> None:
    args = s["model_args"]
    out.print(f"[bold]{literal(s['path'])}[/]: timm {literal(s['architecture'])} folder")
    out.print(", ".join(f"{literal(k)}={literal(v)}" for k, v in args.items()))
    out.print(
        f"parameters: {s['params']:,} in {s['tensors']} tensors ({literal(', '.join(s['dtypes']))}, "
        f"{s['file_bytes'] / 1e6:.2f} MB)"
    )
    lg = s.get("lgtool")
    if lg and lg.get("route") == WEIGHT_SELECTION:
        _render_selection(lg)
    elif lg:
        out.print(
            f"from: {literal(str(lg.get('method', '?')).upper())} learngene {literal(lg.get('learngene'))} "
            f"(sha256 {literal(str(lg.get('learngene_sha256', ''))[:12])}…); head {literal(lg.get('head'))}"
        )
        out.print(f"layers ({literal(lg.get('layer_source'))}): {literal(lg.get('layers'))}")


def _render_selection(lg: dict) -> None:
    """A weight-selected Desc-Net's lineage: what it was cut from, and how."""
    digest = lg.get("ancestor_sha256")
    weights = f"sha256 {literal(digest[:12])}…" if isinstance(digest, str) else "sha256 unknown"
    out.print(
        f"from: weight selection of ancestor {literal(lg.get('ancestor'))} ({weights}; depth "
        f"{literal(lg.get('ancestor_depth'))}, width {literal(lg.get('ancestor_width'))})"
    )
    if not isinstance(digest, str):
        out.print(f"ancestor weights not hashed: {literal(lg.get('ancestor_sha256_missing'))}")
    out.print(f"layers (ancestor blocks, {literal(lg.get('layer_policy'))}): {literal(lg.get('layers'))}")
    out.print(f"width: {literal(lg.get('width_source'))}; head {literal(lg.get('head'))}")
