"""Issue 27: each failure class a user can cause is one line on stderr with its documented exit code, never a
traceback: `expand --check` beyond memory, names that are not UTF-8, SIGTERM during expand, convert and inspect."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_fashion_mnist, tiny_gene
from test_clobber import LEARN, ws  # noqa: F401 - the fixture

import lgtool
import lgtool.base.arch
import lgtool.training.descnet
from lgtool.base.atomic import atomic_dir
from lgtool.base.interrupt import Terminated


def _gene(tmp_path, method="tleg"):
    path = tmp_path / "gene.safetensors"
    tiny_gene(method).save(path)
    return path


def _no_tensors_read(monkeypatch):
    monkeypatch.setattr(lgtool.training.descnet, "read_learngene", lambda *a: pytest.fail("read before the refusal"))


def test_expand_check_beyond_this_machines_memory_is_refused_before_any_work(run_cli, tmp_path, monkeypatch):
    gene = _gene(tmp_path)
    _no_tensors_read(monkeypatch)
    # the 28 px learngene at 16,380 px: 5.5 million patches, a 0.7 GB Desc-Net that expand alone makes, but a
    # forward of --check's 4 images holds about 33 GB (the MLP's activations alone 11 GB): more than this machine
    code, out, err = run_cli("expand", gene, "--img-size", 16_380, "--check", "-o", tmp_path / "big")
    assert (code, out) == (3, "") and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: expand --check: a model of ") and "or expand without --check" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gene.safetensors"]


def test_expand_check_counts_the_reload_that_expand_alone_does_not_need(run_cli, tmp_path, monkeypatch):
    gene = _gene(tmp_path)
    target = lgtool.load_learngene(gene).arch
    weights = target.num_params() * 4
    # room for expand's three copies, not for what --check also holds
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: 4 * weights)
    _no_tensors_read(monkeypatch)
    code, out, err = run_cli("expand", gene, "--check", "-o", tmp_path / "desc")
    assert (code, out) == (3, "") and err.count("\n") == 1 and "error: expand --check: " in err, err
    monkeypatch.undo()
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: 4 * weights)
    assert run_cli("expand", gene, "-o", tmp_path / "desc")[0] == 0  # without --check it fits


OUT_OF_MEMORY = {
    "MemoryError": MemoryError(),
    "torch-allocator": RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"),
    "mmap-refused": OSError(errno.ENOMEM, "Cannot allocate memory"),
}


@pytest.mark.parametrize("error", OUT_OF_MEMORY.values(), ids=OUT_OF_MEMORY.keys())
def test_running_out_of_memory_during_check_is_one_line_and_writes_nothing(run_cli, tmp_path, monkeypatch, error):
    gene = _gene(tmp_path)

    def reload(*args, **kwargs):
        raise error

    monkeypatch.setattr(lgtool.training.descnet, "check_descnet", reload)
    code, out, err = run_cli("expand", gene, "--check", "-o", tmp_path / "desc")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: --check: out of memory reloading the Desc-Net (") and "nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gene.safetensors"]  # no output, no temporary left


def _big_gene(tmp_path):
    path = tmp_path / "gene.safetensors"
    tiny_gene("tleg", width=256, num_heads=4, img_size=224, patch_size=16, in_chans=3, num_classes=1000).save(path)
    return path


@pytest.mark.parametrize("check", [[], ["--check"]], ids=["write", "write-and-check"])
def test_sigterm_while_expand_writes_is_one_line_exit_143_and_leaves_nothing(tmp_path, check):
    gene = _big_gene(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(lgtool.__file__).parent.parent)}
    args = [sys.executable, "-m", "lgtool", "expand", gene, "--depth", 24, *check, "-o", tmp_path / "desc"]
    run = subprocess.Popen(list(map(str, args)), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".desc.*.tmp")):  # the temporary folder: the write has begun
        assert run.poll() is None and time.monotonic() < deadline, "expand ended before it wrote"
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert (run.returncode, out) == (143, b""), err
    assert err == b"error: terminated by SIGTERM\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gene.safetensors"]  # no output, no temporary


def test_a_sigterm_held_back_stops_a_write_before_it_takes_its_name(tmp_path, monkeypatch):
    import lgtool.base.interrupt as interrupt

    monkeypatch.setattr(interrupt, "_pending", [signal.SIGTERM])
    with pytest.raises(Terminated), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("x")
    assert list(tmp_path.iterdir()) == []


# A file name may hold any bytes but "/" and NUL; Python holds those that are not UTF-8 as lone surrogates. lgtool
# takes such names (refusing them would lock out files a legacy-encoded system made) and writes them into text, its
# cards, config.json, JSON results and console lines, as `\xNN`, the way Python's repr of the bytes shows them.
GENE = os.fsdecode(b"gene-\xff.safetensors")
OUT = os.fsdecode(b"desc-\xfe")


def test_expand_takes_names_that_are_not_utf8_and_writes_them_escaped(run_cli, tmp_path):
    tiny_gene("tleg").save(tmp_path / GENE)
    code, out, err = run_cli("expand", tmp_path / GENE, "--check", "-o", tmp_path / OUT)
    assert code == 0, err
    assert f"wrote {tmp_path}/desc-\\xfe/ " in out and "check: " in out
    config = json.loads((tmp_path / OUT / "config.json").read_bytes().decode("utf-8"))
    assert config["lgtool"]["learngene"] == "gene-\\xff.safetensors"
    card = (tmp_path / OUT / "README.md").read_bytes().decode("utf-8")
    assert "`gene-\\xff.safetensors`" in card and "desc-\\xfe" in card
    code, out, err = run_cli("expand", tmp_path / GENE, "--json", "-o", tmp_path / (OUT + "2"))
    assert code == 0 and json.loads(out)["output"] == f"{tmp_path}/desc-\\xfe2", err
    for target in (GENE, OUT):
        for json_flag in ([], ["--json"]):
            code, out, err = run_cli("inspect", tmp_path / target, *json_flag)
            assert code == 0 and ("\\xff" in out or "\\xfe" in out), err
            if json_flag:
                json.loads(out)


@needs_fashion_mnist
def test_learn_from_an_ancestor_and_to_a_file_whose_names_are_not_utf8(run_cli, ws):  # noqa: F811
    ancestor = ws / os.fsdecode(b"vit-\xfd")
    os.rename(ws / "vit", ancestor)
    data = ("--data-dir", ws / "fm")
    code, out, err = run_cli("learn", "--ancestor", ancestor, *data, *LEARN, "--json", "-o", ws / GENE)
    assert code == 0, err
    result = json.loads(out)
    assert result["output"] == f"{ws}/gene-\\xff.safetensors"
    code, out, err = run_cli("inspect", ws / GENE)
    assert code == 0 and f"ancestor={ws}/vit-\\xfd" in out, err
