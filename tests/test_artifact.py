"""The learngene file: unique tensors, readable metadata, round trip, and every kind of bad file."""

import json
import struct

import pytest
import torch
from conftest import tiny_gene
from safetensors import safe_open
from safetensors.torch import save_file

import lgtool
from lgtool.base.errors import InputError


def test_round_trip_keeps_tensors_and_metadata(tmp_path, method):
    gene = tiny_gene(method)
    path = gene.save(tmp_path / "g.safetensors")
    loaded = lgtool.load_learngene(path)
    assert loaded.meta == gene.meta
    assert loaded.tensors.keys() == gene.tensors.keys()
    assert all(torch.equal(loaded.tensors[k], gene.tensors[k]) for k in gene.tensors)


def test_metadata_readable_with_plain_safetensors(gene_file, method):
    with safe_open(str(gene_file), "pt") as f:
        meta = f.metadata()
        names = set(f.keys())
    assert meta["format"] == "pt"
    doc = json.loads(meta["learngene"])
    assert doc["schema"] == "learngene/1" and doc["method"] == method
    assert {"arch", "rule", "tensors", "provenance"} <= doc.keys()
    assert set(doc["tensors"]) == names
    assert doc["provenance"]["lgtool_version"] == lgtool.__version__


def test_sws_stores_one_block_per_stage_not_per_layer(tmp_path):
    gene = tiny_gene("sws")  # Aux depth 5 in 3 stages
    names = lgtool.load_learngene(gene.save(tmp_path / "g.safetensors")).tensors
    assert {n.split(".")[0] for n in names if n.startswith("stage")} == {"stage0", "stage1", "stage2"}
    assert not any(n.startswith("blocks.") for n in names)
    assert sum(1 for n in names if n.endswith("mlp.fc1.weight")) == 3


def test_tleg_names_say_intercept_and_slope(tmp_path):
    names = lgtool.load_learngene(tiny_gene("tleg").save(tmp_path / "g.safetensors")).tensors
    assert "intercept.attn.qkv.weight" in names and "slope.attn.qkv.weight" in names


def test_truncated_file_is_refused(gene_file):
    data = gene_file.read_bytes()
    gene_file.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated or corrupt"):
        lgtool.load_learngene(gene_file)


@pytest.mark.parametrize("content", [b"", b"abc", b"\xff" * 64, struct.pack("<Q", 10) + b"not json!!"])
def test_garbage_is_refused(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a safetensors file"):
        lgtool.load_learngene(path)


def test_plain_safetensors_file_is_not_a_learngene(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(InputError, match="not a learngene"):
        lgtool.load_learngene(path)


def _rewrite_metadata(path, edit):
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = f.metadata()
    doc = json.loads(meta["learngene"])
    edit(doc, tensors)
    save_file(tensors, str(path), metadata={"format": "pt", "learngene": json.dumps(doc)})


def test_unknown_schema_is_refused(gene_file):
    _rewrite_metadata(gene_file, lambda doc, t: doc.update(schema="learngene/2"))
    with pytest.raises(InputError, match="unknown learngene schema 'learngene/2'"):
        lgtool.load_learngene(gene_file)


def test_invalid_metadata_is_refused(gene_file):
    _rewrite_metadata(gene_file, lambda doc, t: doc["arch"].update(embed_dim="wide"))
    with pytest.raises(InputError, match="invalid learngene metadata: arch.embed_dim"):
        lgtool.load_learngene(gene_file)


def test_tensors_that_disagree_with_metadata_are_refused(gene_file):
    def drop_one(doc, tensors):
        tensors.pop(sorted(tensors)[0])

    _rewrite_metadata(gene_file, drop_one)
    with pytest.raises(InputError, match="tensors do not match the metadata"):
        lgtool.load_learngene(gene_file)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        tiny_gene("tleg").save(tmp_path / "g.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
