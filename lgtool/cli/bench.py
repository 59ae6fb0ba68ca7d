"""`lgtool bench`: is a learngene the cheapest way to a family of sizes?"""

from __future__ import annotations

from pathlib import Path

import typer

from lgtool.bench.cost import INITS
from lgtool.cli.app import BENCH, app, emit, err, float_list, int_list, out
from lgtool.format.lazy import lazy
from lgtool.format.text import literal

benching = lazy("lgtool.bench.run")


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
    cfg = benching.BenchConfig(
        depths=int_list(depths, "--depths"),
        width=width,
        num_heads=num_heads,
        widths=int_list(widths, "--widths") or [],
        width_depths=int_list(width_depths, "--width-depths"),
        inits=[i for i in inits.split(",") if i],
        epochs=epochs,
        learn_epochs=learn_epochs,
        learn_init=learn_init,
        learn_family=learn_family,
        max_epochs=max_epochs,
        lr_grid=float_list(lr_grid, "--lr-grid") or [],
        warmup_grid=float_list(warmup_grid, "--warmup-grid") or [],
        val_fraction=val_fraction,
        train_samples=None if all_data else train_samples,
        seed=seed,
    )
    report = benching.run_bench(
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
        emit(report, True, None)
    else:
        out.print((output / "results.md").read_text(), markup=False, highlight=False)
        out.print(
            f"wrote {literal(output)}/results.json, results.md, accuracy_vs_depth.png and time_to_accuracy.png "
            f"in {report['wall_seconds']:.0f} s"
        )
