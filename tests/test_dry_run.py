"""`--dry-run` on learn, finetune, convert and bench: the run's plan on the real arguments, and nothing else. It
exits 0 with what the run would do, reads no data and loads no model (every loader fails the test if called),
writes nothing (the folder around the inputs and outputs lists and hashes the same, and no output claim is left
behind), and for a mistake gives exactly the run's exit code and one error line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_input import refused, snapshot
from test_convert import official_checkpoint

import lgtool.base.atomic as atomic
import lgtool.bench.run
import lgtool.convert
import lgtool.training.data
import lgtool.training.finetune
import lgtool.training.learn

JSON_MODES = [pytest.param(False, id="text"), pytest.param(True, id="json")]


@pytest.fixture
def ws(tmp_path):
    """tmp_path: an official SWS checkpoint, and an ImageFolder of two classes whose images are not images (a run
    that read one would fail)."""
    official_checkpoint("sws", tmp_path / "checkpoint.pth")
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "images" / label / f"{i}.png").write_bytes(b"not a png")
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Every loader of data or model weights, and every command's run, fails the test if called."""

    def fail(*args, **kwargs):
        raise AssertionError("a dry run read data, loaded a model or ran")

    loaders = {
        lgtool.training.data: ["load_data"],
        lgtool.training.learn: ["load_data", "load_ancestor", "run_learn"],
        lgtool.training.finetune: ["load_data", "load_ancestor", "load_source", "run_finetune"],
        lgtool.bench.run: ["load_data", "load_ancestor", "load_learngene", "run_bench"],
        lgtool.convert: ["eps_effect", "run_convert"],
    }
    for module, names in loaders.items():
        for name in names:
            monkeypatch.setattr(module, name, fail)


def command_line(line: str, ws: Path) -> list[str]:
    return [arg.format(ws=ws, images=ws / "images") for arg in line.split()]


# Each command's dry run on good arguments, and some of what it says the run would do.
PLANS = {
    "learn": (
        "learn --ancestor fmnist-vit --data {images} -o {ws}/gene.safetensors",
        {"method": "sws", "aux_depth": 16, "width": None, "checkpoint": "{ws}/gene.ckpt", "keeps_checkpoint": False},
    ),
    "finetune": (
        "finetune fmnist-vit --data {images} --num-classes 2 --epochs 3 -o {ws}/tuned",
        {"source": "fmnist-vit", "width": 128, "num_classes": 2, "epochs": 3, "teacher": None, "resume": None},
    ),
    "convert": (
        "convert {ws}/checkpoint.pth -o {ws}/gene.safetensors",
        {"method": "sws", "weights": "model", "epoch": 149, "aux_depth": 5, "num_heads": 4},
    ),
    "bench": (
        "bench --ancestor fmnist-vit --data {images} --depths 2,4 -o {ws}/bench",
        {"ancestor": "fmnist-vit", "sizes": [[2, 64], [4, 64]], "rows_done": 0, "learngenes": {}},
    ),
}


@pytest.mark.parametrize("as_json", JSON_MODES)
@pytest.mark.parametrize("command", list(PLANS))
def test_a_dry_run_says_what_the_run_would_do_and_reads_and_writes_nothing(run_cli, ws, no_work, command, as_json):
    line, expected = PLANS[command]
    args = command_line(line, ws)
    output = Path(args[args.index("-o") + 1])
    before, claims = snapshot(ws), dict(atomic._claims)
    code, stdout, stderr = run_cli(*args, "--dry-run", *(["--json"] if as_json else []))
    assert code == 0 and stderr == "", stderr
    assert snapshot(ws) == before and not os.path.lexists(output)
    assert atomic._claims == claims  # the outputs' claims guard a run's writes; none follow a dry run
    if as_json:
        plan = json.loads(stdout)  # exactly one JSON object: json.loads refuses anything after it
        assert plan["dry_run"] is True and plan["output"] == str(output)
        assert {k: plan[k] for k in expected} == {k: _in(v, ws) for k, v in expected.items()}
    else:
        assert len(stdout.splitlines()) == 1, stdout
        assert stdout.startswith("dry run: would ") and str(output) in stdout
        assert stdout.rstrip().endswith(("no data read, nothing written", "the checkpoint was read, nothing written"))


def _in(value, ws: Path):
    return value.format(ws=ws) if isinstance(value, str) else value


# A mistake: the command line, the files there first (each holding "x"), the exit code and what the line says.
MISTAKES = [
    ("learn --ancestor fmnist-vit -o {ws}/gene.safetensors", ["gene.safetensors"], 3, "already exists"),
    ("learn --ancestor fmnist-vit -o {ws}/gene.safetensors", ["gene.ckpt"], 3, "holds an earlier run"),
    ("learn --ancestor fmnist-vit --resume {ws}/none.ckpt -o {ws}/gene.safetensors", [], 3, "no such checkpoint"),
    ("learn --ancestor no_such_model_xyz -o {ws}/gene.safetensors", [], 3, "not a timm model name"),
    ("learn --ancestor fmnist-vit -o {ws}/missing/gene.safetensors", [], 3, "folder {ws}/missing does not exist"),
    ("learn --ancestor fmnist-vit --epochs 0 -o {ws}/gene.safetensors", [], 2, "--epochs"),
    ("finetune fmnist-vit -o {ws}/tuned", ["tuned/metrics.json"], 3, "already exists"),
    ("finetune -o {ws}/tuned", [], 3, "give a model folder to fine-tune"),
    ("finetune {ws}/no-model -o {ws}/tuned", [], 3, "not a model folder"),
    ("finetune fmnist-vit --resume {ws}/none.ckpt -o {ws}/tuned", [], 3, "no such checkpoint"),
    ("finetune fmnist-vit -o {ws}/missing/tuned", [], 3, "folder {ws}/missing does not exist"),
    ("convert {ws}/checkpoint.pth -o {ws}/gene.safetensors", ["gene.safetensors"], 3, "already exists"),
    ("convert {ws}/none.pth -o {ws}/gene.safetensors", [], 3, "no such file"),
    ("convert {ws}/garbage.pth -o {ws}/gene.safetensors", ["garbage.pth"], 3, "not a readable PyTorch checkpoint"),
    ("convert {ws}/checkpoint.pth --method wave -o {ws}/gene.safetensors", [], 2, "no official WAVE code"),
    ("bench -o {ws}/bench", ["bench/results.json"], 3, "already holds a bench"),
    ("bench --resume -o {ws}/bench", ["bench/results.json"], 3, "cannot resume from it"),
    ("bench -o {ws}/bench", ["bench"], 3, "not a folder"),
    ("bench --ancestor no_such_model_xyz -o {ws}/bench", [], 3, "not a timm model name"),
    ("bench --width 33 -o {ws}/bench", [], 2, "not divisible by the 2 attention heads"),
    ("bench --data {images} -o {ws}/bench", [], 2, "--ancestor is required"),
    # where the data should be, checked by every plan without reading an image
    ("learn --ancestor fmnist-vit --data {ws}/no-images -o {ws}/gene.safetensors", [], 3, "data folder"),
    ("finetune fmnist-vit --data-dir {ws}/no-fmnist -o {ws}/tuned", [], 3, "Fashion-MNIST not found"),
    ("bench --data-dir {ws}/no-fmnist -o {ws}/bench", [], 3, "Fashion-MNIST not found"),
]


@pytest.mark.parametrize(
    "line, files, code, says", [pytest.param(*case, id=f"{case[0].split()[0]}: {case[3]}") for case in MISTAKES]
)
def test_a_mistake_gives_the_runs_error_with_or_without_dry_run(run_cli, ws, no_work, line, files, code, says):
    for name in files:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text("x")
    args, says = command_line(line, ws), says.format(ws=ws)
    error = refused(run_cli, ws, *args, code=code, says=says)
    assert refused(run_cli, ws, *args, "--dry-run", code=code) == error
    assert refused(run_cli, ws, *args, "--dry-run", code=code, as_json=True) == error


@pytest.mark.parametrize(
    "line, files",
    [
        ("learn --ancestor fmnist-vit --force -o {ws}/gene.safetensors", ["gene.safetensors", "gene.ckpt"]),
        ("finetune fmnist-vit --force -o {ws}/tuned", ["tuned/best/model.safetensors", "tuned/metrics.json"]),
        ("convert {ws}/checkpoint.pth --force -o {ws}/gene.safetensors", ["gene.safetensors"]),
    ],
    ids=["learn", "finetune", "convert"],
)
def test_a_dry_run_with_force_replaces_nothing(run_cli, ws, no_work, line, files):
    for name in files:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text("an earlier run's")
    before = snapshot(ws)
    code, stdout, stderr = run_cli(*command_line(line, ws), "--dry-run")
    assert code == 0 and stdout.startswith("dry run: would "), stderr
    assert snapshot(ws) == before


def test_bench_accepts_an_output_whose_folders_do_not_exist_yet_as_its_run_does(run_cli, ws, no_work):
    """The bench's run makes its -o folder and the folders above it (learn, finetune and convert refuse a missing
    folder: MISTAKES), so its dry run passes, creating none of them."""
    before = snapshot(ws)
    code, stdout, stderr = run_cli("bench", "-o", ws / "runs" / "today" / "bench", "--dry-run")
    assert code == 0 and "would bench" in stdout, stderr
    assert snapshot(ws) == before


def test_a_pipeline_validates_a_learn_command_line_in_a_fresh_process(ws):
    """What a CI job runs before it spends GPU hours: `python -m lgtool ... --dry-run --json` exits 0 and prints
    one JSON object, in a second or two of checks and no training."""
    before = snapshot(ws)
    args = ["learn", "--ancestor", "fmnist-vit", "--method", "tleg", "--data", ws / "images", "--epochs", 300]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lgtool", *map(str, args), "-o", str(ws / "tleg.safetensors"), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] is True and plan["method"] == "tleg" and plan["epochs"] == 300 and plan["aux_depth"] == 12
    assert snapshot(ws) == before
