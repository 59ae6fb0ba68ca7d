"""`lgtool expand` and `lgtool inspect` as a user and a shell pipeline meet them."""

import json

import pytest
import torch
from conftest import tiny_gene

import lgtool


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_expand_writes_a_timm_folder_and_check_passes(run_cli, gene_file, tmp_path, method):
    out = tmp_path / "desc"
    depth = {"sws": 5, "tleg": 4, "wave": 4}[method]  # the Aux depth: --check also compares with the Aux-Net
    code, stdout, err = run_cli("expand", gene_file, "--depth", depth, "--check", "--json", "-o", out)
    assert code == 0, err
    result = json.loads(stdout)  # stdout is exactly one JSON object
    assert result["check"]["passed"] and result["check"]["max_abs_diff_aux"] < 1e-5
    assert result["check"]["max_abs_diff_timm"] < 1e-5
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_args"]["depth"] == depth and config["lgtool"]["method"] == method
    assert len(config["lgtool"]["layers"]) == depth
    assert _no_leftovers(tmp_path)


def test_expand_defaults_match_the_card(run_cli, tmp_path, monkeypatch):
    """`lgtool expand --depth 9 --width small` works as written, in a folder holding learngene.safetensors."""
    monkeypatch.chdir(tmp_path)
    lgtool.init_learngene("sws", width="small", img_size=28, patch_size=7, in_chans=1, num_classes=10).save(
        "learngene.safetensors"
    )
    code, stdout, err = run_cli("expand", "--depth", 9, "--width", "small")
    assert code == 0, err
    assert (tmp_path / "desc-d9-small" / "model.safetensors").is_file()
    assert "depth 9" in stdout and "[0, 0, 1, 1, 2, 2, 3, 3, 4]" in stdout


def test_layer_map_is_used_and_recorded(run_cli, tmp_path):
    gene = tmp_path / "g.safetensors"
    tiny_gene("sws").save(gene)
    code, stdout, err = run_cli("expand", gene, "--depth", 4, "--layer-map", "2,2,0,1", "--json", "-o", tmp_path / "d")
    assert code == 0, err
    assert json.loads(stdout)["layers"] == [2, 2, 0, 1]
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "d" / "model.safetensors"))
    assert torch.equal(w["blocks.0.mlp.fc1.weight"], lgtool.load_learngene(gene).tensors["stage2.mlp.fc1.weight"])


def test_check_failure_exits_4_and_writes_nothing(run_cli, gene_file, tmp_path, monkeypatch):
    import lgtool.training.descnet

    monkeypatch.setattr(lgtool.training.descnet, "check_descnet", lambda *a, **k: {"max_abs_diff_timm": 1.0})
    code, out, err = run_cli("expand", gene_file, "--depth", 5, "--check", "-o", tmp_path / "d", "--json")
    assert code == 4 and "--check failed" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [gene_file.name]  # no folder, no temporary left


@pytest.mark.parametrize(
    "args, message",
    [
        (["--depth", "2"], "smaller than the 3 SWS stages"),
        (["--depth", "5", "--width", "small"], "makes its Aux width 32 and narrower"),
        (["--depth", "5", "--width", "huge"], "unknown width 'huge'"),
        (["--depth", "4", "--layer-map", "0,1,2"], "3 entries but the depth is 4"),
        (["--depth", "4", "--layer-map", "0,1,2,7"], "names stage 7"),
    ],
)
def test_bad_targets_exit_3_with_one_line(run_cli, tmp_path, args, message):
    gene = tmp_path / "g.safetensors"
    tiny_gene("sws").save(gene)
    code, stdout, err = run_cli("expand", gene, *args, "-o", tmp_path / "out")
    assert code == 3, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert stdout == "" and not (tmp_path / "out").exists() and _no_leftovers(tmp_path)


def test_bad_files_exit_3(run_cli, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 3)
    for path in (bad, tmp_path / "missing.safetensors"):
        code, _, err = run_cli("expand", path, "--depth", 4, "-o", tmp_path / "out")
        assert code == 3 and len(err.strip().splitlines()) == 1
        code, _, err = run_cli("inspect", path)
        assert code == 3 and len(err.strip().splitlines()) == 1


def test_existing_output_is_kept_unless_force(run_cli, gene_file, tmp_path):
    out = tmp_path / "desc"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = run_cli("expand", gene_file, "--depth", 5, "-o", out)
    assert code == 3 and "already exists" in err and (out / "mine.txt").read_text() == "keep me"
    code, _, err = run_cli("expand", gene_file, "--depth", 5, "-o", out, "--force")
    assert code == 0, err
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file() and _no_leftovers(tmp_path)


def test_usage_error_exits_2(run_cli, gene_file):
    code, _, _ = run_cli("expand", gene_file, "--depth", "nine")
    assert code == 2


def test_inspect_learngene_json(run_cli, gene_file, method):
    code, stdout, err = run_cli("inspect", gene_file, "--json")
    assert code == 0, err
    info = json.loads(stdout)
    gene = lgtool.load_learngene(gene_file)
    assert info["method"] == method and info["params"] == gene.num_params()
    assert {t["name"] for t in info["tensors"]} == set(gene.tensors)
    lo, hi = info["storage_ratio_depths"]
    family = sum(
        lgtool.expand(gene, depth=d).state_dict()[k].numel()
        for d in range(lo, hi + 1)
        for k in lgtool.expand(gene, depth=d).state_dict()
    )
    assert info["storage_ratio"] == pytest.approx(family / gene.num_params(), rel=1e-3)


def test_inspect_table_and_descnet(run_cli, gene_file, tmp_path):
    code, stdout, _ = run_cli("inspect", gene_file)
    assert code == 0 and "storage ratio" in stdout and "block templates" in stdout
    run_cli("expand", gene_file, "--depth", 6, "-o", tmp_path / "d")
    code, stdout, _ = run_cli("inspect", tmp_path / "d", "--json")
    info = json.loads(stdout)
    assert code == 0 and info["kind"] == "descnet" and info["params_match_config"] is True
    assert info["model_args"]["depth"] == 6


def test_inspect_does_not_import_torch(gene_file):
    import subprocess
    import sys

    code = (
        "import sys; from lgtool.cli import main; sys.argv=['lgtool','inspect',sys.argv[1],'--json'];\n"
        "try: main()\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'inspect imported torch'"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(gene_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kind"] == "learngene"


COMMANDS = ["learn", "expand", "finetune", "inspect", "convert", "bench"]


def _help(run_cli, monkeypatch, *command):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: nothing wrapped apart
    code, out, _ = run_cli(*command, "--help")
    assert code == 0
    return out


def test_the_exit_codes_are_stated_once_and_every_command_points_there(run_cli, monkeypatch):
    root = " ".join(_help(run_cli, monkeypatch).split())
    assert root.count("Exit codes: 0 ok") == 1 and "3 invalid input" in root and "143 SIGTERM" in root
    for command in COMMANDS:
        text = " ".join(_help(run_cli, monkeypatch, command).split())
        assert text.count("Exit codes: see lgtool --help") == 1 and "0 ok" not in text, command


@pytest.mark.parametrize("command", COMMANDS)
def test_no_flag_shows_a_type_and_every_option_says_one_sentence(run_cli, monkeypatch, command):
    import re

    import click
    import typer

    from lgtool.cli import app

    text = _help(run_cli, monkeypatch, command)
    assert "<bool>" not in text and "--help" in text
    sub = typer.main.get_command(app).commands[command]
    ctx = click.Context(sub)
    for param in [*sub.params, sub.get_help_option(ctx)]:
        shown = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else None
        assert (shown is None) == bool(getattr(param, "is_flag", False)), f"{param.opts}: {shown}"
        help_text = getattr(param, "help", "") or ""
        assert not re.search(r"[.;]\s+(?=[A-Z(])", help_text.strip()), f"{param.opts}: {help_text}"
