"""Issue 27: each failure class a user can cause is one line on stderr with its documented exit code, never a
traceback: `expand --check` beyond memory, names that are not UTF-8, SIGTERM during expand, convert and inspect."""

import errno

import pytest
from conftest import tiny_gene

import lgtool.base.arch
import lgtool.training.descnet


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
