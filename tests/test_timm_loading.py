"""Desc-Net folders load with plain timm, strictly, both ways the design promises (offline)."""

import json

import timm
import torch
from conftest import tiny_gene
from safetensors.torch import load_file

import lgtool
from lgtool.family import describe_layers, target_arch
from lgtool.hub import lineage, write_descnet
from lgtool.learngene import read_learngene


def _write(tmp_path, method, depth, **target):
    gene, sha256 = read_learngene(tiny_gene(method).save(tmp_path / "g.safetensors"))
    arch = target_arch(gene, depth, **target)
    model = lgtool.expand(gene, arch)
    info = lineage(gene.meta, tmp_path / "g.safetensors", sha256, arch, describe_layers(gene, arch))
    out = write_descnet(model.state_dict(), arch, tmp_path / "desc", gene.meta.input.model_dump(), info)
    return model, out


def test_local_dir_and_file_overlay_load_strictly(tmp_path, method):
    model, out = _write(tmp_path, method, depth=6)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        a = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        config = json.loads((out / "config.json").read_text())
        b = timm.create_model(
            config["architecture"],
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"), num_classes=config["num_classes"]),
            **config["model_args"],
        ).eval()
        assert torch.equal(a(x), ref) and torch.equal(b(x), ref)
    # exactly timm's keys: a strict load into a fresh model of the same arguments
    fresh = timm.create_model(config["architecture"], **config["model_args"])
    fresh.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert tuple(timm.data.resolve_data_config({}, model=a)["mean"]) == (0.5,)


def test_wave_other_width_folder_loads(tmp_path):
    model, out = _write(tmp_path, "wave", depth=3, width=48, num_classes=4)
    a = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(a(x), model(x))
    assert a.embed_dim == 48 and a.head.out_features == 4
