"""learn, finetune and expand never overwrite without --force, and never overwrite their own inputs;
a bad output path fails before any work. Each refusal: exit 3, one line, the files untouched."""

import pytest
from conftest import needs_fashion_mnist, tiny_gene
from test_bad_input import refused


@pytest.fixture
def gene(tmp_path):
    return tiny_gene("tleg").save(tmp_path / "g.safetensors")


@pytest.mark.parametrize(
    "output, force, says",
    [
        ("g.safetensors", True, "would overwrite this command's input"),  # the input itself
        (".", True, "would overwrite this command's input"),  # the folder that holds it
        ("desc", False, "already exists"),
        ("missing/desc", False, "does not exist"),
        ("d" * 250, False, "temporary name"),
    ],
    ids=["input", "folder-of-input", "existing", "no-parent", "long-name"],
)
def test_expand_refuses(run_cli, tmp_path, gene, output, force, says):
    (tmp_path / "desc").mkdir()
    refused(
        run_cli, tmp_path, "expand", gene, "-o", tmp_path / output, *(["--force"] if force else []), code=3, says=says
    )


@needs_fashion_mnist
@pytest.mark.parametrize(
    "output, force, says",
    [
        ("anc/best/model.safetensors", True, "would overwrite this command's input"),
        ("anc/best/gene.safetensors", True, "would overwrite this command's input"),
        ("old.safetensors", False, "already exists"),
        ("missing/g.safetensors", False, "does not exist"),
    ],
    ids=["ancestor-weights", "inside-ancestor", "existing", "no-parent"],
)
def test_learn_refuses_before_training(run_cli, ancestor, tmp_path, output, force, says):
    import shutil

    shutil.copytree(ancestor, tmp_path / "anc" / "best")
    (tmp_path / "old.safetensors").write_bytes(b"a learngene I want to keep")
    args = ["learn", "--ancestor", tmp_path / "anc" / "best", "--method", "tleg", "--aux-depth", 2]
    refused(run_cli, tmp_path, *args, "-o", tmp_path / output, *(["--force"] if force else []), code=3, says=says)


@needs_fashion_mnist
@pytest.mark.parametrize(
    "output, force, says",
    [
        ("desc", True, "would overwrite this command's input"),
        ("desc/tuned", True, "would overwrite this command's input"),
        ("tuned", False, "already exists"),
    ],
    ids=["source", "inside-source", "existing"],
)
def test_finetune_refuses_before_training(run_cli, tmp_path, gene, output, force, says):
    assert run_cli("expand", gene, "--depth", 2, "-o", tmp_path / "desc")[0] == 0
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "notes.txt").write_text("mine")
    args = ["finetune", tmp_path / "desc", "--epochs", 1]
    refused(run_cli, tmp_path, *args, "-o", tmp_path / output, *(["--force"] if force else []), code=3, says=says)
