"""`lgtool learn`: distil a learngene from an ancestor."""

from __future__ import annotations

import typer

from lgtool.cli.app import WRITES, app, emit, err, is_main, out
from lgtool.cli.options import takes, train_options
from lgtool.cli.progress import Reporter
from lgtool.format.lazy import lazy
from lgtool.format.text import literal
from lgtool.training.settings import LearnConfig, TrainConfig

learning = lazy("lgtool.training.learn")


@app.command(epilog=WRITES)
@takes(LearnConfig, name="settings")
@train_options(defaults_of="learn")
def learn(
    settings: LearnConfig = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    cfg: TrainConfig = None,
):
    """Distil a learngene from an ancestor: train its templates through the Aux-Net by knowledge distillation.

    Examples:

        lgtool learn --ancestor deit_base --data /data/imagenet --width small

        lgtool learn --ancestor ancestor/ --method tleg --epochs 4 -o tleg.safetensors

        torchrun --nproc-per-node 8 -m lgtool learn --ancestor deit_base --data /data/imagenet
    """
    with Reporter(f"learn {settings.method}", err) as report:
        result = learning.learn(settings, cfg, log=report)
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
