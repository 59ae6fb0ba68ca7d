"""`lgtool bench`: is a learngene the cheapest way to a family of sizes?"""

from __future__ import annotations

import typer

from lgtool.base.lazy import lazy
from lgtool.base.text import literal
from lgtool.bench.settings import BenchConfig, BenchIO
from lgtool.cli.app import SEE_EXIT_CODES, app, dry_run_option, emit, err, out, plural, show_plan
from lgtool.cli.options import takes

benching = lazy("lgtool.bench.run")


@app.command(epilog=SEE_EXIT_CODES)
@takes(BenchConfig)
@takes(BenchIO, name="io")
def bench(
    cfg: BenchConfig = None,
    io: BenchIO = None,
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON object on stdout."),
    dry_run: bool = dry_run_option(),
):
    """Compare learngene routes with scratch, distillation and weight selection on real data; hand over the family.

    With no arguments: Fashion-MNIST with the shipped ancestor fmnist-vit, depths 2, 6, 12, every route with its
    rates chosen on validation, every row on seeds 0 and 1 (under 10 minutes on 2 CPU cores). The verdict per
    learngene is cheaper, tie or dearer, from the ratio's interval over the seeds. OUT/family/ holds the first
    seed's best model per size on validation, family.json, a card and recipe.sh, which rebuilds it on full data.

    Examples:

        lgtool bench

        lgtool bench --depths 2,4,6,8,10,12 --widths 32,96,128 --train-samples 20000 --seeds 0,1,2 -o full

        lgtool bench --ancestor fmnist-cnn --epochs 0 -o cnn

        lgtool bench --depths 2,4,6,8,10,12 -o full --dry-run
    """
    if dry_run:
        return show_plan(lambda: benching.plan_bench(cfg, io), as_json, _planned)
    plan = benching.plan_bench(cfg, io)  # every check, before anything is loaded or written
    report = benching.run_bench(plan, log=lambda msg: err.print(msg, highlight=False))
    emit(report, as_json, lambda r: _render_bench(plan, r))


def _render_bench(plan, r: dict) -> None:
    out.print((plan.out / "results.md").read_text(), markup=False, highlight=False)
    family = "" if plan.io.no_family else "the best model per size, "
    out.print(
        f"wrote {literal(plan.out)}/results.json, results.md, accuracy_vs_depth.png and time_to_accuracy.png "
        f"in {r['wall_seconds']:.0f} s; the family in {literal(plan.out)}/family/ ({family}family.json, "
        "README.md, recipe.sh)"
    )


def _planned(p: dict) -> str:
    c = p["config"]
    images = f"{c['train_samples']:,} training images" if c["train_samples"] else "every training image"
    sizes = ", ".join(f"d{d} w{w}" for d, w in p["sizes"])
    resume = f", continuing its {plural(p['rows_done'], 'row')}" if p["resume"] else ""
    return (
        f"bench {', '.join(c['inits'])} against {literal(p['ancestor'])} on {literal(p['data'])} ({images}) at "
        f"{sizes}, on {plural(len(c['seeds']), 'seed')} ({', '.join(map(str, c['seeds']))}): each learngene "
        f"fine-tuned {plural(c['epochs'], 'epoch')}, each alternative up to "
        f"{plural(c['max_epochs'], 'epoch')}, into [bold]{literal(p['output'])}/[/]{resume}"
    )
