"""Benchmark lgtool's core commands against baselines measured in the same run.

Measures (medians; every baseline is timed interleaved with what it is compared to):

  inspect    `lgtool inspect GENE --json` on the TLEG learngene below, as a subprocess
             (`python -m lgtool` and the `lgtool` console script), vs `python -c pass`.
             Target: < 0.3 s absolute.
  --help     `lgtool --help` cold start, as a subprocess, vs `python -c pass`. Target: < 0.6 s.
  expand     `lgtool expand GENE --depth D -o DIR` (D: --depth, default 12) for TLEG and SWS (stages 3,3,2,2,2)
             learngenes of --width (default small: DeiT-S, 384), as a subprocess, vs the durable baseline: a subprocess
             that imports torch + safetensors, loads the very same Desc-Net state dict (pre-saved) with
             `load_file`, writes it with `safetensors.torch.save_file` and flushes it to disk (`fsync` of the
             file, then of its folder), as lgtool flushes what it writes.
             Also in-process, where process start-up and the torch import drop out:
             `lgtool.training.descnet.expand_folder` (what the command runs) vs the same durable baseline run
             in-process (`load_file` of the pre-saved state dict, `save_file`, the flushes). Target: <= 1.3x the
             baseline. `write only` rows time the write alone (`save_file` + flushes of the state dict already in
             memory), a bound below which no expand can go; they carry no target.

Run:  .venv/bin/python examples/bench_core.py [--repeats 3] [--runs 7] [--width small] [--depth 12]
      [--expand-only] [--json] [--workdir DIR]

With --json the table goes to stderr and stdout holds exactly one JSON object. Takes ~1.5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed


def durable_save(state: dict, path: Path) -> None:
    """The durable baseline's write: `save_file`, then the file and its folder flushed to disk."""
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"format": "pt"})
    flush(path)
    flush(path.parent)


def flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(*paths: Path) -> None:
    """Delete outputs, then flush the page cache so that no timed write waits on an earlier one's writeback."""
    for p in paths:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if hasattr(os, "sync"):
        os.sync()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(name, subject, baseline, repeats, *, target, absolute, before=None, warmup=False):
    """Time `subject()` and `baseline()` alternately `repeats` times (calling `before()` ahead of each)."""
    if warmup:
        subject(), baseline()
    samples, base_samples = [], []
    for _ in range(repeats):
        for fn, bucket in ((baseline, base_samples), (subject, samples)):
            if before:
                before()
            bucket.append(timed(fn))
    med, base = statistics.median(samples), statistics.median(base_samples)
    ratio = med / base
    return {
        "name": name,
        "seconds": round(med, 4),
        "baseline_seconds": round(base, 4),
        "ratio": round(ratio, 2),
        "target": None if target is None else f"< {target} s" if absolute else f"<= {target}x",
        "passed": None if target is None else (med < target) if absolute else (ratio <= target),
        "samples": [round(s, 4) for s in samples],
        "baseline_samples": [round(s, 4) for s in base_samples],
    }


def lgtool_commands() -> dict[str, list[str]]:
    cmds = {"python -m lgtool": [PY, "-m", "lgtool"]}
    script = Path(PY).parent / ("lgtool.exe" if os.name == "nt" else "lgtool")
    if script.exists():
        cmds["lgtool"] = [str(script)]
    return cmds


def make_genes(work: Path, width: str) -> dict[str, Path]:
    import lgtool

    genes = {
        "tleg": lgtool.init_learngene("tleg", width=width),
        "sws": lgtool.init_learngene("sws", width=width, stages=[3, 3, 2, 2, 2]),
    }
    return {method: gene.save(work / f"{method}-{width}.safetensors") for method, gene in genes.items()}


def bench_in_process(method: str, gene_path: Path, work: Path, repeats: int, depth: int) -> tuple[list, Path]:
    """What `lgtool expand` runs (load gene, materialize, lineage, write the folder) vs the durable baseline in
    process (load_file + save_file + flushes of the same state dict), and the write alone for scale; returns the
    rows and a plain copy of the state dict for the subprocess baseline."""
    from safetensors.torch import load_file, save_file

    from lgtool.training.descnet import ExpandConfig, expand_folder

    out_dir, plain = work / f"inproc-{method}", work / f"plain-{method}.safetensors"
    copy = work / f"copy-{method}.safetensors"

    def subject():
        expand_folder(gene_path, out_dir, ExpandConfig(depth=depth))

    subject()  # warm-up; its output gives the baseline its (identical every time) state dict
    state = load_file(str(out_dir / "model.safetensors"))
    save_file(state, str(plain), metadata={"format": "pt"})  # the baselines' input
    flush(plain)
    rows = [
        compare(
            f"expand {method} d{depth}, in-process",
            subject,
            lambda: durable_save(load_file(str(plain)), copy),
            repeats,
            target=1.3,
            absolute=False,
            before=lambda: remove(out_dir, copy),
        ),
        compare(
            f"expand {method} d{depth} vs write only, in-process",
            subject,
            lambda: durable_save(state, copy),
            repeats,
            target=None,
            absolute=False,
            before=lambda: remove(out_dir, copy),
        ),
    ]
    remove(out_dir, copy)
    return rows, plain


def bench_startup(gene_path: Path, runs: int) -> list[dict]:
    """`inspect` and `--help` per way of launching lgtool, vs bare interpreter start-up."""
    python_pass = lambda: run_once([PY, "-c", "pass"])  # noqa: E731
    rows = []
    for label, cmd in lgtool_commands().items():
        inspect = lambda c=cmd: run_once([*c, "inspect", str(gene_path), "--json"])  # noqa: E731
        help_ = lambda c=cmd: run_once([*c, "--help"])  # noqa: E731
        rows.append(
            compare(
                f"`{label} inspect GENE --json`", inspect, python_pass, runs, target=0.3, absolute=True, warmup=True
            )
        )
        rows.append(compare(f"`{label} --help`", help_, python_pass, runs, target=0.6, absolute=True, warmup=True))
    return rows


RESAVE = (
    "import os, sys, torch, safetensors.torch as st; "
    "st.save_file(st.load_file(sys.argv[1]), sys.argv[2], metadata={'format': 'pt'}); "
    "out = sys.argv[2]; "
    "[(os.fsync(fd), os.close(fd)) for fd in (os.open(p, os.O_RDONLY) for p in (out, os.path.dirname(out) or '.'))]"
)


def bench_expand_cli(method: str, gene_path: Path, plain: Path, work: Path, repeats: int, depth: int) -> dict:
    """`lgtool expand` subprocess vs a torch+safetensors subprocess re-saving the same state dict durably."""
    cli = list(lgtool_commands().values())[-1]  # the console script when there is one
    out_dir, copy = work / f"cli-{method}", work / f"copy-{method}.safetensors"

    row = compare(
        f"`lgtool expand` {method} d{depth}, subprocess",
        lambda: run_once([*cli, "expand", str(gene_path), "--depth", str(depth), "-o", str(out_dir)]),
        lambda: run_once([PY, "-c", RESAVE, str(plain), str(copy)]),
        repeats,
        target=1.3,
        absolute=False,
        before=lambda: remove(out_dir, copy),
    )
    remove(out_dir, copy)
    return row


def render(rows: list[dict]) -> str:
    lines = ["| measurement | lgtool (s) | baseline (s) | ratio | target | ok |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        ok = {True: "yes", False: "**NO**", None: "-"}[r["passed"]]
        lines.append(
            f"| {r['name']} | {r['seconds']:.3f} | {r['baseline_seconds']:.3f} | {r['ratio']:.2f}x "
            f"| {r['target'] or '-'} | {ok} |"
        )
    lines.append(
        "\nbaselines: `python -c pass` (start-up rows); a torch+safetensors subprocess doing load_file + "
        "save_file + fsync (file and folder) of the same state dict (subprocess expand rows); the same in-process "
        "(in-process rows); save_file + fsync of it already in memory (write-only rows)"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each expand measurement (default 3)")
    ap.add_argument("--runs", type=int, default=7, help="runs of each start-up measurement (default 7)")
    ap.add_argument("--width", default="small", help="learngene width: tiny, small (default), base or an integer")
    ap.add_argument("--depth", type=int, default=12, help="Desc-Net depth of the expand rows (default 12)")
    ap.add_argument("--expand-only", action="store_true", help="time the expand rows only (no start-up rows)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()

    import torch

    from lgtool.base.compat import import_timm

    import_timm()  # so that no in-process timing pays for importing timm
    t_start, load_start = time.perf_counter(), os.getloadavg() if hasattr(os, "getloadavg") else None
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lgtool-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        genes = make_genes(work, args.width)
        remove()  # sync the learngene files to disk before timing anything
        rows = [] if args.expand_only else bench_startup(genes["tleg"], args.runs)
        for method, gene_path in genes.items():
            in_process, plain = bench_in_process(method, gene_path, work, args.repeats, args.depth)
            rows += [bench_expand_cli(method, gene_path, plain, work, args.repeats, args.depth), *in_process]
            remove(plain)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(render(rows), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        env = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "runs": args.runs,
            "width": args.width,
            "depth": args.depth,
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "loadavg_1min_start_end": [load_start and load_start[0], hasattr(os, "getloadavg") and os.getloadavg()[0]],
        }
        print(json.dumps({"env": env, "results": rows, "all_passed": all(r["passed"] is not False for r in rows)}))


if __name__ == "__main__":
    main()
