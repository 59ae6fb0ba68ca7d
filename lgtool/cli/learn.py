"""`lgtool learn`: distil a learngene from an ancestor."""

from __future__ import annotations

import typer

from lgtool.base.lazy import lazy
from lgtool.base.text import literal
from lgtool.cli.app import SEE_EXIT_CODES, app, data_words, dry_run_option, emit, err, is_main, out, plural, show_plan
from lgtool.cli.options import takes, train_options
from lgtool.cli.progress import Reporter
from lgtool.training.settings import LearnConfig, TrainConfig

learning = lazy("lgtool.training.learn")


@app.command(epilog=SEE_EXIT_CODES)
@takes(LearnConfig, name="settings")
@train_options(defaults_of="learn")
def learn(
    settings: LearnConfig = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    dry_run: bool = dry_run_option(),
    cfg: TrainConfig = None,
):
    """Distil a learngene from an ancestor: train its templates through the Aux-Net by knowledge distillation.

    Examples:

        lgtool learn --ancestor deit_base --data /data/imagenet --width small

        lgtool learn --ancestor ancestor/ --method tleg --epochs 4 -o tleg.safetensors

        torchrun --nproc-per-node 8 -m lgtool learn --ancestor deit_base --data /data/imagenet

        lgtool learn --ancestor fmnist-vit --method tleg -o tleg.safetensors --dry-run
    """
    if dry_run:
        return show_plan(lambda: learning.plan_learn(settings, cfg), as_json, _planned)
    with Reporter(f"learn {settings.method}", err) as report:
        result = learning.learn(settings, cfg, on_event=report)
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


def _planned(p: dict) -> str:
    width = f"width {p['width']}" if p["width"] else "the ancestor's width"
    family = f", for {plural(len(p['family']), 'size')} at once" if p["family"] else ""
    resume = f", continuing {p['resume']}" if p["resume"] else ""
    return (
        f"learn a {p['method'].upper()} learngene from {literal(p['ancestor'])} ({width}, Aux depth {p['aux_depth']}"
        f"{family}, {plural(p['epochs'], 'epoch')} on {literal(data_words(p))}{literal(resume)}) into "
        f"[bold]{literal(p['output'])}[/]{' (replacing it)' if p['replaces'] else ''}"
    )
