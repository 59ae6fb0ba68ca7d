"""Bad input files and bad option values, through the command line: the right exit code, exactly one `error:`
line on stderr and no traceback, nothing on stdout (with --json too), and nothing written: the folder holding
the inputs and the output path lists and hashes the same after the run as before it."""

import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_gene
from safetensors.torch import load_file, save_file
from test_data_errors import write_fashion_mnist

from lgtool.base.arch import Arch, build_vit
from lgtool.base.errors import InputError
from lgtool.hub import write_descnet
from lgtool.learngene import load_learngene

# A tiny plain ViT folder (timm hub layout) for 28 px gray images, as `lgtool expand` writes one.
TINY_VIT = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=1, num_heads=2, num_classes=10)
JSON_MODES = [pytest.param(False, id="text"), pytest.param(True, id="json")]


def snapshot(root: Path) -> dict:
    """Every file and folder under `root`: relative path -> sha256 of its bytes (or "dir")."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def refused(run_cli, root: Path, *args, code: int, says: str | None = None, as_json: bool = False) -> str:
    """Run `lgtool ARGS` and check that it failed cleanly with `code`, leaving `root` as it was. Returns the line."""
    before = snapshot(root)
    got, stdout, stderr = run_cli(*args, *(["--json"] if as_json else []))
    assert got == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert snapshot(root) == before, "a failed run wrote, removed or changed files"
    if says is not None:
        assert says in lines[0], lines[0]
    return lines[0]


# --- hub-layout folders (finetune's SRC, --ancestor) with one fault each ---


def _weights(folder: Path) -> Path:
    return folder / "model.safetensors"


def _edit_state(folder: Path, edit) -> None:
    state = load_file(str(_weights(folder)))
    edit(state)
    save_file(state, str(_weights(folder)))


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _other_width(folder: Path) -> None:
    wide = TINY_VIT.model_copy(update={"embed_dim": 64})
    save_file(build_vit(wide).state_dict(), str(_weights(folder)))


def _renamed(state: dict) -> None:
    state["head.bias_renamed"] = state.pop("head.bias")


def _truncate(folder: Path) -> None:
    data = _weights(folder).read_bytes()
    _weights(folder).write_bytes(data[: len(data) // 2])


def _set(name: str, value: float):
    def edit(state):
        state[name].view(-1)[0] = value

    return edit


# name -> (how the folder is broken, what the error line says besides the file's name)
WEIGHT_FAULTS = {
    "weights-missing": (lambda f: _weights(f).unlink(), "no weights file (model.safetensors is missing)"),
    "weights-garbage": (lambda f: _weights(f).write_bytes(b"\x00garbage" * 64), "not a safetensors file"),
    "weights-truncated": (_truncate, "truncated or corrupt"),
    "weights-wrong-shapes": (_other_width, "weights do not match the model"),
    "weights-wrong-names": (lambda f: _edit_state(f, _renamed), "weights do not match the model"),
}
CONFIG_FAULTS = {
    "config-not-json": (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
    "config-without-model-args": (lambda f: _edit_config(f, lambda c: c.pop("model_args")), "no model_args"),
    "config-model-args-a-list": (lambda f: _edit_config(f, lambda c: c.update(model_args=[1])), "no model_args"),
    "config-model-args-depth-0": (
        lambda f: _edit_config(f, lambda c: c["model_args"].update(depth=0)),
        "model_args are not a plain ViT",
    ),
}
NONFINITE = {
    "nan-in-a-block": (lambda f: _edit_state(f, _set("blocks.0.attn.qkv.weight", math.nan)), "blocks.0.attn.qkv"),
    "inf-in-pos-embed": (lambda f: _edit_state(f, _set("pos_embed", math.inf)), "pos_embed"),
    "minus-inf-in-head": (lambda f: _edit_state(f, _set("head.bias", -math.inf)), "head.bias"),
}


@pytest.fixture
def workspace(tmp_path):
    """tmp_path/ws: Fashion-MNIST-shaped data (fm/) and a good tiny ViT folder (vit/)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write_fashion_mnist(ws / "fm")
    torch.manual_seed(0)
    write_descnet(build_vit(TINY_VIT).state_dict(), TINY_VIT, ws / "vit", {"mean": [0.5], "std": [0.5]}, {})
    return ws


def _case(table: dict, name: str):
    return pytest.param(*table[name], id=name)


def _finetune_refused(run_cli, tmp_path, workspace, src, says, as_json):
    args = ("finetune", src, "--data-dir", workspace / "fm", "--epochs", 1, "-o", tmp_path / "out")
    return refused(run_cli, tmp_path, *args, code=3, says=says, as_json=as_json)


@pytest.mark.parametrize("as_json", JSON_MODES)
@pytest.mark.parametrize(
    "breaks, says", [_case(WEIGHT_FAULTS, k) for k in WEIGHT_FAULTS] + [_case(CONFIG_FAULTS, k) for k in CONFIG_FAULTS]
)
def test_finetune_refuses_a_broken_source_folder(run_cli, tmp_path, workspace, breaks, says, as_json):
    src = workspace / "vit"
    breaks(src)
    line = _finetune_refused(run_cli, tmp_path, workspace, src, says, as_json)
    assert str(src) in line  # names the folder (its config.json or weights file)


@pytest.mark.parametrize("as_json", JSON_MODES)
@pytest.mark.parametrize("breaks, says", [_case(NONFINITE, k) for k in NONFINITE])
def test_finetune_refuses_nonfinite_source_weights_before_training(run_cli, tmp_path, workspace, breaks, says, as_json):
    src = workspace / "vit"
    breaks(src)
    line = _finetune_refused(
        run_cli, tmp_path, workspace, src, f"{src}/model.safetensors holds non-finite weights", as_json
    )
    assert says in line and "loss" not in line  # refused up front, not found as a NaN loss in training


def test_finetune_with_a_fresh_head_still_checks_the_weights(run_cli, tmp_path, workspace):
    """--num-classes drops the source's head; a fault elsewhere in the file is still one line."""
    src = workspace / "vit"
    _truncate(src)
    args = ("finetune", src, "--data-dir", workspace / "fm", "--num-classes", 10, "-o", tmp_path / "out")
    refused(run_cli, tmp_path, *args, code=3, says=f"{src}/model.safetensors")


def _finetune_refused(run_cli, tmp_path, workspace, src, says, as_json):
    args = ("finetune", src, "--data-dir", workspace / "fm", "--epochs", 1, "-o", tmp_path / "out")
    return refused(run_cli, tmp_path, *args, code=3, says=says, as_json=as_json)


@pytest.mark.parametrize("as_json", JSON_MODES)
@pytest.mark.parametrize(
    "breaks, says", [_case(WEIGHT_FAULTS, k) for k in WEIGHT_FAULTS] + [_case(NONFINITE, "nan-in-a-block")]
)
def test_ancestor_folder_with_broken_weights_names_its_file(run_cli, tmp_path, workspace, breaks, says, as_json):
    """Not "cannot get pretrained weights (offline)": the folder's own weights file and what is wrong with it."""
    anc = workspace / "vit"
    breaks(anc)
    out = tmp_path / "gene.safetensors"
    line = refused(
        run_cli,
        tmp_path,
        "learn",
        "--ancestor",
        anc,
        "--method",
        "tleg",
        "--data-dir",
        workspace / "fm",
        "--epochs",
        1,
        "-o",
        out,
        code=3,
        as_json=as_json,
    )
    assert says in line and "model.safetensors" in line and str(anc) in line
    assert "offline" not in line and "pretrained weights" not in line


def test_ancestor_timm_name_without_local_weights_still_says_offline(run_cli, tmp_path, workspace, monkeypatch):
    from lgtool.base.compat import import_timm
    from lgtool.training.ancestor import _cached

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if _cached(import_timm(), "deit_tiny_patch16_224"):
        pytest.skip("deit_tiny's weights are in the local hub cache")
    out = tmp_path / "gene.safetensors"
    args = ("learn", "--ancestor", "deit_tiny", "--data-dir", workspace / "fm", "-o", out)
    refused(run_cli, tmp_path, *args, code=3, says="no cached pretrained weights and offline (HF_HUB_OFFLINE=1)")


# --- learngenes holding NaN or Inf ---


def _poisoned_gene(path: Path, method: str, value: float) -> Path:
    gene = tiny_gene(method)
    gene.tensors["pos_embed"].view(-1)[3] = value
    gene.tensors["head.weight"].view(-1)[0] = value  # sorts before pos_embed: the one the error names
    gene.save(path)
    return path


NONFINITE_VALUES = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
]


@pytest.mark.parametrize("as_json", JSON_MODES)
@pytest.mark.parametrize("value", NONFINITE_VALUES)
def test_expand_refuses_a_nonfinite_learngene(run_cli, tmp_path, method, value, as_json):
    gene = _poisoned_gene(tmp_path / f"{method}.safetensors", method, value)
    refused(
        run_cli,
        tmp_path,
        "expand",
        gene,
        "--depth",
        3,
        "-o",
        tmp_path / "desc",
        code=3,
        says=f"{gene}: tensor head.weight holds NaN or Inf",
        as_json=as_json,
    )


def test_every_loader_refuses_a_nonfinite_learngene(tmp_path):
    gene = _poisoned_gene(tmp_path / "tleg.safetensors", "tleg", math.nan)
    with pytest.raises(InputError, match="tensor head.weight holds NaN or Inf"):
        load_learngene(gene)


def test_inspect_of_a_nonfinite_learngene_reads_the_header_only(run_cli, tmp_path):
    """`inspect` never loads tensors, so it describes the file (and says nothing of its values)."""
    gene = _poisoned_gene(tmp_path / "wave.safetensors", "wave", math.nan)
    code, stdout, stderr = run_cli("inspect", gene, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["method"] == "wave"


def test_bench_refuses_a_nonfinite_learngene_before_creating_its_folder(run_cli, tmp_path):
    gene = _poisoned_gene(tmp_path / "tleg.safetensors", "tleg", math.inf)
    (tmp_path / "images").mkdir()  # there, so the plan passes; the run loads the learngene before any image
    args = ("bench", "--learngene", gene, "--data", tmp_path / "images", "--ancestor", "fmnist-vit")
    refused(run_cli, tmp_path, *args, "-o", tmp_path / "out", code=3, says="holds NaN or Inf")


# --- bench: everything validated before its -o folder is created ---


@pytest.mark.parametrize(
    "args, code, says",
    [
        pytest.param(["--ancestor", "fmnist-vit"], 3, "data folder", id="data-missing"),
        pytest.param(
            ["--ancestor", "no-such-model"], 3, "--ancestor no-such-model: not a timm model", id="ancestor-unknown"
        ),
        pytest.param(
            ["--ancestor", "fmnist-vit", "--width", "33"], 2, "not divisible by the 2 attention heads", id="width-33"
        ),
        pytest.param(
            ["--ancestor", "fmnist-vit", "--width", "33", "--num-heads", "1"],
            2,
            "cannot hold the bench's WAVE learngene",
            id="width-33-one-head",
        ),
        pytest.param(
            ["--ancestor", "fmnist-vit", "--width", "64", "--num-heads", "3"],
            2,
            "not divisible by 3 heads",
            id="heads-3",
        ),
    ],
)
def test_bench_validates_before_creating_its_folder(run_cli, tmp_path, args, code, says):
    """The data is missing in every case: a check made after loading it would say so (exit 3) instead."""
    line = refused(
        run_cli, tmp_path, "bench", "--data", tmp_path / "no-data", *args, "-o", tmp_path / "out", code=code, says=says
    )
    assert "1056" not in line  # once "the width must be a multiple of 1056": lcm(template 32, head dim 33)


def test_bench_width_33_names_the_heads_not_a_multiple_of_1056(run_cli, tmp_path):
    """`lgtool bench --width 33` (the shipped ancestor has 2 heads of 64): says what is true of width 33."""
    line = refused(run_cli, tmp_path, "bench", "--width", 33, "-o", tmp_path / "out", code=2, as_json=True)
    assert "--width 33 is not divisible by the 2 attention heads of --ancestor fmnist-vit" in line
    assert "1056" not in line and "multiple of 2" in line


def test_bench_ancestor_with_broken_weights_creates_nothing(run_cli, tmp_path, workspace):
    """The ancestor is loaded (after the data, one bench batch of 128 images here) and refused before -o exists."""
    _truncate(workspace / "vit")
    data = write_fashion_mnist(workspace / "fm160", n_train=160)  # 144 once the validation split is held out
    args = ("bench", "--ancestor", workspace / "vit", "--data-dir", data, "--train-samples", 160)
    refused(run_cli, tmp_path, *args, "-o", tmp_path / "out", code=3, says=str(workspace / "vit" / "model.safetensors"))


def test_bench_data_smaller_than_a_batch_creates_nothing(run_cli, tmp_path, workspace):
    args = ("bench", "--ancestor", workspace / "vit", "--data-dir", workspace / "fm", "-o", tmp_path / "out")
    refused(run_cli, tmp_path, *args, code=3, says="6 training images, fewer than one batch of the bench (128 images)")


def test_bench_output_that_is_a_file_is_refused(run_cli, tmp_path):
    (tmp_path / "out").write_text("not a folder")
    args = ("bench", "--data", tmp_path / "no-data", "--ancestor", "fmnist-vit", "-o", tmp_path / "out")
    refused(run_cli, tmp_path, *args, code=3, says="not a folder")


# --- option values: exit 2 before any data is loaded ---
# Every command gets a data argument that does not exist, so that a check made after loading the data (or the
# learngene) would fail with exit 3 instead, and --json, whose stdout must stay empty too.

TRAINING = [  # learn's and finetune's shared training options
    "--epochs 0",
    "--epochs abc",
    "--batch-size 0",
    "--lr -1",
    "--lr 0",
    "--lr nan",
    "--lr inf",
    "--warmup-epochs -1",
    "--warmup-epochs nan",
    "--reprob 1.5",
    "--mixup -1",
    "--mixup 0.5 --batch-size 3",  # mixing pairs needs an even batch
    "--smoothing 1",
    "--model-ema-decay 1",
    "--aa bogus",
    "--kd bogus",
    "--tau 0",
    "--alpha 2",
    "--drop-path nan",
    "--bogus",
]
LEARN = TRAINING + [
    "--aux-depth 0",
    "--template-size 0",
    "--num-templates 0",
    "--img-size 0",
    "--patch-size 0",
    "--num-heads 0",
    "--train-samples 0",
    "--method bogus",
    "--init bogus",
    "--stages abc",
    # relations between options, and the width's spelling: as much usage errors as a value out of range
    "--width abc",
    "--width 0",
    "--width 64 --num-heads 3",
    "--img-size 30 --patch-size 7",
    "--method sws --template-size 8",
    "--method tleg --stages 1,1",
    "--method sws --aux-depth 5 --stages 2,2",
    "--method wave --keep-order",
    "--family-depths two",
    "--family-depths 0-4",
    "--family-widths 32,-1",
    "--family-samples 1",
]
FINETUNE = TRAINING + [
    "--img-size 0",
    "--patch-size 0",
    "--num-heads 0",
    "--num-classes 0",
    "--num-classes -1",
    "--depth 0",
    "--train-samples 0",
    "--init bogus",
    "--init scratch --width abc",
    "--init scratch --width 64 --num-heads 3",
    "--init scratch --img-size 30 --patch-size 7",
]
EXPAND = [
    "--depth 0",
    "--depth abc",
    "--num-classes 0",
    "--num-classes -1",
    "--tol nan",
    "--tol -1",
    "--calibrate-steps 0",
    "--calibrate-samples 0",
    "--layer-map abc",
    "--bogus",
]
BENCH = [
    "--epochs -1",
    "--epochs abc",
    "--learn-epochs 0",
    "--scratch-max-epochs 0",
    "--max-epochs 0",
    "--warmup-grid -1",
    "--warmup-grid nan",
    "--depths 0",
    "--depths abc",
    "--widths 0",
    "--width-depths 0",
    "--width 0",
    "--width huge",
    "--width 33",  # the shipped ancestor has 2 heads
    "--num-heads 0",
    "--num-heads 3",  # does not divide the width, 64
    "--train-samples 0",
    "--train-samples 100",  # fewer than one batch of the bench, 128
    "--lr-grid -1",
    "--lr-grid nan",
    "--inits bogus",
    "--learn-init bogus",
    "--seed -1",
    "--bogus",
]


def _option_cases():
    for command, table in (("learn", LEARN), ("finetune", FINETUNE), ("expand", EXPAND), ("bench", BENCH)):
        for options in table:
            yield pytest.param(command, options.split(), id=f"{command} {options}")


def _base_args(command: str, tmp_path: Path) -> list:
    missing = tmp_path / "no-data"
    return {
        "learn": ["learn", "--ancestor", "fmnist-vit", "--data", missing, "-o", tmp_path / "gene.safetensors"],
        "finetune": ["finetune", missing / "src", "--data", missing, "-o", tmp_path / "out"],
        "expand": ["expand", missing / "gene.safetensors", "-o", tmp_path / "desc"],
        "bench": ["bench", "--ancestor", "fmnist-vit", "--data", missing, "-o", tmp_path / "out"],
    }[command]


@pytest.mark.parametrize("command, options", list(_option_cases()))
def test_bad_option_value_is_a_usage_error_before_any_data_is_read(run_cli, tmp_path, command, options):
    refused(run_cli, tmp_path, *_base_args(command, tmp_path), *options, code=2, as_json=True)
