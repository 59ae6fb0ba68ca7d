"""The `lgtool` command line: parse, call the library, print. No learning logic lives here.

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 input invalid or missing, 4 a --check failed.
With --json, stdout holds exactly one JSON object; logs and progress go to stderr.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lgtool.format import __version__
from lgtool.format.arch import SLOTS
from lgtool.bench.cost import INITS
from lgtool.cli.options import train_options
from lgtool.training.settings import TrainConfig
from lgtool.format.errors import LgtoolError, UsageError
from lgtool.rules import RULES
from lgtool.format.text import dumps, literal

# Every command's --help ends with the contract its errors keep.
WRITES = (
    "Exit codes: 0 ok, 1 runtime failure, 2 usage error (a bad flag or value, checked before any data is read), "
    "3 invalid input or output, 4 a --check failed, 130 Ctrl-C, 143 SIGTERM (training saves a checkpoint first); "
    "errors are one line on stderr. An existing output is refused without --force; an output that is one of the "
    "inputs in any form (a link too), or a device, FIFO or link loop, always; files are written under a "
    "temporary name and renamed into place only if the name still holds what was checked."
)
BENCH = (
    "Exit codes: 0 ok, 1 runtime failure, 2 usage error (checked before anything is created), 3 invalid input "
    "or output; errors are one line on stderr. A folder that already holds a bench is continued only with "
    "--resume; results are written under a temporary name and renamed into place."
)
READS = "Exit codes: 0 ok, 2 usage error, 3 invalid input; errors are one line on stderr. Reads headers only."

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
    help="Build families of Vision Transformers of many sizes from one compact learngene (SWS, TLEG, WAVE).",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool):
    if value:
        print(f"lgtool {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())


def _emit(result: dict, as_json: bool, render) -> None:
    if as_json:
        sys.stdout.write(dumps(result) + "\n")  # strict: NaN and Infinity from a crafted file become null
    else:
        render(result)


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 2,4,6") from None


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
    from lgtool.family import family_grid, parse_sizes
    from lgtool.training.learn import learn as learn_gene
    from lgtool.cli.progress import Reporter

    rule_options = {
        k: v for k, v in (("template_size", template_size), ("num_templates", num_templates)) if v is not None
    }
    with Reporter(f"learn {method}", err) as report:
        result = learn_gene(
            ancestor,
            method,
            data,
            output,
            ancestor_weights=ancestor_weights,
            data_dir=data_dir,
            width=width,
            num_heads=num_heads,
            aux_depth=aux_depth,
            stages=_int_list(stages, "--stages"),
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
    if _is_main():
        _emit(result, as_json, _render_learn)


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _render_learn(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['output'])}[/] — {r['method'].upper()} learngene, width {r['width']}, Aux depth "
        f"{r['aux_depth']}, {r['params']:,} parameters"
    )
    out.print(
        f"Aux-Net held-out top-1 {r['aux_top1']:.4f} (ancestor {r['ancestor_top1']:.4f}); {r['steps']} steps, "
        f"{r['images_per_s']:.0f} images/s, {r['train_seconds']:.0f} s, peak memory {r['peak_memory_mb']:.0f} MB"
    )


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
    from lgtool.hub import expand_folder

    if not math.isfinite(tol):
        raise UsageError(f"--tol must be a finite number, got {tol}")
    result = expand_folder(
        gene,
        output,
        depth=depth,
        width=width,
        num_classes=num_classes,
        layer_map=_int_list(layer_map, "--layer-map"),
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
    _emit(result, as_json, _render_expand)


def _calibration_reporter():
    from lgtool.cli.progress import Reporter

    return Reporter("calibrate", err)


def _render_expand(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['output'])}/[/] — {r['method'].upper()} Desc-Net, depth {r['depth']}, "
        f"width {r['width']} ({_plural(r['num_heads'], 'head')}), {r['num_classes']} classes, "
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
    from lgtool.training.finetune import finetune as finetune_model
    from lgtool.cli.progress import Reporter

    if init not in ("pretrained", "scratch"):
        raise UsageError(f"unknown --init {init!r}: choose pretrained or scratch")
    with Reporter(f"finetune {src or init}", err) as report:
        result = finetune_model(
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
    if _is_main():
        _emit(result, as_json, _render_finetune)


def _render_finetune(r: dict) -> None:
    out.print(
        f"wrote [bold]{literal(r['best'])}[/] (best held-out top-1 {r['best_top1']:.4f}, epoch {r['best_epoch']}) "
        f"and {literal(r['last'])}; {r['params']:,} parameters, {r['steps']} steps, {r['images_per_s']:.0f} images/s, "
        f"{r['train_seconds']:.0f} s"
    )


def _float_list(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, e.g. 2e-4,5e-4,2e-3") from None


@app.command(epilog=READS)
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
    out.print(f"[bold]{literal(s['path'])}[/]: {literal(s['method'].upper())} learngene ({literal(s['schema'])})")
    out.print(
        f"Aux-Net: depth {s['aux_depth']}, width {a['embed_dim']}, {_plural(a['num_heads'], 'head')}, "
        f"{a['img_size']}px / patch {a['patch_size']}, {_plural(a['in_chans'], 'channel')}, {a['num_classes']} classes"
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
    if lg:
        out.print(
            f"from: {literal(str(lg.get('method', '?')).upper())} learngene {literal(lg.get('learngene'))} "
            f"(sha256 {literal(str(lg.get('learngene_sha256', ''))[:12])}…); head {literal(lg.get('head'))}"
        )
        out.print(f"layers ({literal(lg.get('layer_source'))}): {literal(lg.get('layers'))}")


@app.command(epilog=WRITES)
def convert(
    ckpt: Path = typer.Argument(..., help="An official Aux-Net checkpoint.pth, or its state dict (.pth/.safetensors)."),
    output: Path = typer.Option(
        Path("learngene.safetensors"), "-o", "--output", help="The learngene file (its folder must exist)."
    ),
    method: str | None = typer.Option(None, "--method", "-m", help="sws or tleg (default: detected from the keys)."),
    stages: str | None = typer.Option(
        None, "--stages", help="SWS Aux stage sizes, e.g. 3,3,4,3,3 (default: from args.model, or the official)."
    ),
    aux_depth: int | None = typer.Option(
        None, "--aux-depth", min=1, help="TLEG Aux depth (default: from args.model, else the official 12)."
    ),
    num_heads: int | None = typer.Option(
        None, "--num-heads", min=1, help="The Aux-Net's heads, when the checkpoint's args do not say them."
    ),
    ema: bool = typer.Option(False, "--ema", help="Convert the checkpoint's model_ema weights instead of model."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
):
    """Convert an Aux-Net trained with the papers' official code (eddiexia98/SWS, Robbo4729/MaskLG's TLEG release)
    into a learngene. Loads safely: tensors, containers and argparse.Namespace only; nothing pickled runs.

    Examples:

        lgtool convert output/aux_s/checkpoint.pth -o sws-aux-s.safetensors

        lgtool convert tleg_aux_b.pth --ema -o tleg-b.safetensors && lgtool expand tleg-b.safetensors --depth 9
    """
    from lgtool.convert import convert as convert_checkpoint

    result = convert_checkpoint(
        ckpt,
        output,
        method=method,
        stages=_int_list(stages, "--stages"),
        aux_depth=aux_depth,
        num_heads=num_heads,
        ema=ema,
        force=force,
    )
    _emit(result, as_json, _render_convert)


def _render_convert(r: dict) -> None:
    rule = ", ".join(f"{k}={v}" for k, v in r["rule"].items() if k != "method")
    epoch = f", epoch {r['epoch']}" if r.get("epoch") is not None else ""
    out.print(
        f"wrote [bold]{r['output']}[/] — {r['method'].upper()} learngene from an Aux-Net of {r['repository']} "
        f"({r['weights']}{epoch}): width {r['width']} ({_plural(r['num_heads'], 'head')}), Aux depth {r['aux_depth']}, "
        f"{r['num_classes']} classes, {r['params']:,} parameters" + (f"; {rule}" if rule else "")
    )
    for note in r["differences"]:
        out.print(f"differs from the source: {literal(note)}")


@app.command(epilog=BENCH)
def bench(
    data: str = typer.Option("fashion-mnist", "--data", help="fashion-mnist or an ImageFolder path."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Where the Fashion-MNIST IDX files are."),
    ancestor: str | None = typer.Option(
        None, "--ancestor", help="The teacher (default for fashion-mnist: fmnist-vit, shipped with lgtool)."
    ),
    learngene: list[Path] = typer.Option([], "--learngene", help="Use this learngene instead of learning one."),
    depths: str = typer.Option("2,6,12", "--depths", help="Desc-Net depths."),
    width: str = typer.Option("64", "--width", "-w", help="Family (and learngene) width."),
    num_heads: int | None = typer.Option(
        None, "--num-heads", min=1, help="Heads at --width (default: the ancestor's); other widths keep the head dim."
    ),
    widths: str | None = typer.Option(None, "--widths", help="More widths, e.g. 96,128."),
    width_depths: str | None = typer.Option(None, "--width-depths", help="Depths for --widths (default: all)."),
    inits: str = typer.Option(",".join(INITS), "--inits"),
    epochs: int = typer.Option(
        1, "--epochs", min=0, help="Fine-tune epochs of each learngene size (0: as expanded); the alternatives' first."
    ),
    learn_epochs: int = typer.Option(3, "--learn-epochs", min=1, help="Distillation epochs of each learngene."),
    learn_init: str = typer.Option(
        "ancestor", "--learn-init", help="Learngenes start from: ancestor (a ViT's layers) or official."
    ),
    learn_family: bool = typer.Option(
        False, "--learn-family", help="Distil each learngene for every benched size at once (family-aware)."
    ),
    max_epochs: int = typer.Option(
        4,
        "--max-epochs",
        "--scratch-max-epochs",
        min=1,
        help="Each alternative doubles its epochs up to this until it matches the best learngene.",
    ),
    lr_grid: str = typer.Option("5e-4,2e-3", "--lr-grid", help="Every init picks its rate from these on validation."),
    warmup_grid: str = typer.Option("0.2", "--warmup-grid", help="Warmup epochs to pick from, likewise."),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Training images held out for every choice (rates, when a route matches)."
    ),
    train_samples: int | None = typer.Option(5_000, "--train-samples", help="Class-balanced training subset."),
    all_data: bool = typer.Option(False, "--all-data", help="Use every training image (overrides --train-samples)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the bench in OUT without redoing finished rows."),
    output: Path = typer.Option(Path("bench"), "-o", "--output", help="Folder for results.json/.md and the plots."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON object on stdout."),
):
    """Does a learngene family pay off? Learngene inits against scratch, kd-scratch and weight selection, on real data.

    With no arguments: Fashion-MNIST with the shipped ancestor fmnist-vit, depths 2, 6, 12, every route with its
    rates chosen on validation (under 10 minutes on 2 CPU cores).

    Examples:

        lgtool bench

        lgtool bench --depths 2,4,6,8,10,12 --widths 32,96,128 --width-depths 6 --train-samples 20000 -o full

        lgtool bench --ancestor fmnist-cnn --epochs 0 -o cnn
    """
    from lgtool.bench.run import BenchConfig, run_bench

    cfg = BenchConfig(
        depths=_int_list(depths, "--depths"),
        width=width,
        num_heads=num_heads,
        widths=_int_list(widths, "--widths") or [],
        width_depths=_int_list(width_depths, "--width-depths"),
        inits=[i for i in inits.split(",") if i],
        epochs=epochs,
        learn_epochs=learn_epochs,
        learn_init=learn_init,
        learn_family=learn_family,
        max_epochs=max_epochs,
        lr_grid=_float_list(lr_grid, "--lr-grid") or [],
        warmup_grid=_float_list(warmup_grid, "--warmup-grid") or [],
        val_fraction=val_fraction,
        train_samples=None if all_data else train_samples,
        seed=seed,
    )
    report = run_bench(
        cfg,
        output,
        ancestor=ancestor,
        learngenes=[str(p) for p in learngene],
        data=data,
        data_dir=data_dir,
        resume=resume,
        log=lambda msg: err.print(msg, highlight=False),
    )
    if as_json:
        _emit(report, True, None)
    else:
        out.print((output / "results.md").read_text(), markup=False, highlight=False)
        out.print(
            f"wrote {literal(output)}/results.json, results.md, accuracy_vs_depth.png and time_to_accuracy.png "
            f"in {report['wall_seconds']:.0f} s"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def main() -> None:
    from lgtool.cli.quiet import warnings_held

    with warnings_held():  # library warnings come after a success, and never before an error line
        _main()


def _main() -> None:
    from lgtool.training.interrupt import Terminated, raise_on_sigterm, sigterm_received

    raise_on_sigterm()  # SIGTERM ends a command as Ctrl-C does (training saves first), with exit 143
    try:
        code = app(standalone_mode=False)  # parser errors come to us, so they get one line too
    except typer.Abort:
        _fail("interrupted", 130)
    except typer.TyperException as e:  # the option parser's (click's) errors: exit 2
        command = f"lgtool {sys.argv[1]}" if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "lgtool"
        _fail(f"{e.format_message()} (see {command} --help)", e.exit_code)
    except LgtoolError as e:
        _fail(str(e), e.exit_code)
    except OSError as e:  # what the system refused, where no check could see it coming: still one line
        _fail(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", 1)
    except Terminated:
        _fail("terminated by SIGTERM", 143)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    if code == 130:  # typer returns Ctrl-C (and SIGTERM, raised as one) outside training as a bare 130
        _fail(*(("terminated by SIGTERM", 143) if sigterm_received() else ("interrupted", 130)))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/] {literal(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    sys.exit(code)
