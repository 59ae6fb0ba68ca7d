"""Every size from every learngene: `expand --num-heads` for all methods, and narrower widths of SWS and TLEG
learngenes by evenly spaced selection (weight selection's rule) from their Desc-Net at the learngene's width."""

import json

import pytest
import torch
from conftest import tiny_gene
from safetensors.torch import load_file

import lgtool
from lgtool.base.compat import import_timm
from lgtool.base.errors import UsageError
from lgtool.baselines.weight_selection import select as weight_selection_select
from lgtool.family import target_arch
from lgtool.materialize import evenly_spaced, expand

WIDE = dict(width=64, num_heads=2)  # a 64-wide tiny family, 2 heads of 32


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def test_num_heads_changes_the_config_not_the_weights(run_cli, gene_file, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("expand", gene_file, "--depth", 5, "-o", a)[0] == 0
    code, out, err = run_cli("expand", gene_file, "--depth", 5, "--num-heads", 4, "-o", b, "--json")
    assert code == 0, err
    assert json.loads(out)["num_heads"] == 4
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    before, after = _config(a), _config(b)
    assert before["model_args"]["num_heads"] == 2 and after["model_args"]["num_heads"] == 4
    assert before != after
    timm = import_timm()
    model = timm.create_model(f"local-dir:{b.resolve()}", pretrained=True)
    assert model.blocks[0].attn.num_heads == 4 and model.blocks[0].attn.head_dim == 8


@pytest.mark.parametrize("args", [["--num-heads", "3"], ["--width", "16", "--num-heads", "5"]])
def test_num_heads_that_do_not_divide_the_width_are_usage_errors_before_any_work(
    run_cli, gene_file, tmp_path, monkeypatch, args
):
    import lgtool.training.descnet

    def no_tensors(*_):
        raise AssertionError("tensors were read before the usage check")

    monkeypatch.setattr(lgtool.training.descnet, "read_learngene", no_tensors)
    code, out, err = run_cli("expand", gene_file, "--depth", 4, *args, "-o", tmp_path / "d", "--json")
    assert code == 2, err
    assert "not divisible" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == "" and not (tmp_path / "d").exists()


@pytest.mark.parametrize("method_", ["sws", "tleg"])
@pytest.mark.parametrize("depth", [3, 6])
def test_narrower_width_is_evenly_spaced_selection_of_the_desc_net(run_cli, tmp_path, method_, depth):
    gene = tmp_path / "g.safetensors"
    tiny_gene(method_, **WIDE).save(gene)
    wide, narrow = tmp_path / "w64", tmp_path / "w32"
    assert run_cli("expand", gene, "--depth", depth, "--check", "-o", wide)[0] == 0
    code, out, err = run_cli("expand", gene, "--depth", depth, "--width", 32, "--check", "-o", narrow)
    assert code == 0, err
    assert "evenly spaced selection from the 64-wide Desc-Net" in out and "passed" in out

    big, small = load_file(wide / "model.safetensors"), load_file(narrow / "model.safetensors")
    assert small.keys() == big.keys()
    for key, t in small.items():  # weight selection's own function, applied to the 64-wide Desc-Net
        assert torch.equal(t, weight_selection_select(big[key], t.shape)), key
    assert small["blocks.0.attn.qkv.weight"].shape == (96, 32) and small["pos_embed"].shape == (1, 16, 32)

    config = _config(narrow)
    assert config["model_args"]["embed_dim"] == 32 and config["model_args"]["num_heads"] == 2  # heads kept
    lineage = config["lgtool"]
    assert lineage["selection"]["from_width"] == 64 and lineage["selection"]["to_width"] == 32
    assert "order" not in lineage["selection"]  # a learngene `learn` did not order
    assert "selection" in lineage["width_source"] and "selection" not in _config(wide)["lgtool"]
    assert "evenly spaced selection from the 64-wide Desc-Net" in (narrow / "README.md").read_text()

    timm = import_timm()  # plain timm, no lgtool
    model = timm.create_model(f"local-dir:{narrow.resolve()}", pretrained=True).eval()
    assert model.embed_dim == 32 and len(model.blocks) == depth
    assert model(torch.randn(2, 1, 28, 28)).isfinite().all()

    code, out, err = run_cli("expand", gene, "--check", "-o", tmp_path / "aux", "--json")  # own width, Aux depth
    check = json.loads(out)["check"]
    assert code == 0 and check["passed"] and "max_abs_diff_aux" in check, err


@pytest.mark.parametrize("method_", ["sws", "tleg"])
def test_the_library_path_narrows_too(method_):
    """What the bench does: target_arch then expand, at a narrower width and another class count."""
    gene = tiny_gene(method_, **WIDE)
    target = target_arch(gene, 4, 40, 3)
    assert (target.embed_dim, target.num_heads, target.num_classes) == (40, 2, 3)
    model = expand(gene, target)
    full = expand(gene, target_arch(gene, 4, None, 3))
    idx = evenly_spaced(64, 40)
    assert torch.equal(model.blocks[2].mlp.fc1.weight, full.blocks[2].mlp.fc1.weight[evenly_spaced(256, 160)][:, idx])
    assert torch.equal(model.norm.weight, full.norm.weight[idx])
    assert model.head.weight.shape == (3, 40)  # another class count: a fresh head at the new width
    assert model(torch.randn(2, 1, 28, 28)).isfinite().all()
    heads = target_arch(gene, 4, 32, num_heads=4)
    assert heads.num_heads == 4


def test_selection_after_a_new_resolution():
    gene = tiny_gene("tleg", **WIDE)
    model = expand(gene, target_arch(gene, 3, 32, img_size=56))
    assert model.pos_embed.shape == (1, 64, 32)
    assert model(torch.randn(1, 1, 56, 56)).isfinite().all()


@pytest.mark.parametrize("method_", ["sws", "tleg"])
def test_wider_stays_an_error_naming_wave(run_cli, tmp_path, method_):
    gene = tmp_path / "g.safetensors"
    tiny_gene(method_).save(gene)  # 32 wide
    code, out, err = run_cli("expand", gene, "--depth", 4, "--width", 64, "-o", tmp_path / "d")
    assert code == 3 and "use a WAVE learngene to widen" in err and len(err.strip().splitlines()) == 1
    assert out == "" and not (tmp_path / "d").exists()


def test_a_width_the_kept_heads_do_not_divide_is_a_usage_error():
    gene = tiny_gene("sws", width=64, num_heads=4)
    with pytest.raises(UsageError, match="--num-heads"):
        target_arch(gene, 4, 30)
    assert target_arch(gene, 4, 30, num_heads=3).num_heads == 3


def test_inspect_reports_the_widths_each_learngene_makes(run_cli, gene_file, method):
    code, out, _ = run_cli("inspect", gene_file, "--json")
    info = json.loads(out)
    assert code == 0
    if method == "wave":
        assert info["narrower_widths"] is None and "multiples of" in info["widths"]
    else:
        assert info["widths"] == [32]
        assert info["narrower_widths"] == {"max": 31, "multiple_of": 2, "by": "evenly spaced selection"}
        code, out, _ = run_cli("inspect", gene_file)
        assert "by evenly spaced selection any width up to 31" in out
        ordered = lgtool.load_learngene(gene_file)
        ordered.meta.provenance["ordering"] = {"images": 8}  # what `learn` records once it has ordered the width
        ordered.save(gene_file)
        code, out, _ = run_cli("inspect", gene_file)
        assert "by evenly spaced selection of channels ordered by importance any width up to 31" in out
        code, out, err = run_cli("expand", gene_file, "--width", 16, "--json", "-o", gene_file.parent / "narrow")
        assert code == 0, err
        lineage = json.loads((gene_file.parent / "narrow" / "config.json").read_text())["lgtool"]
        assert lineage["selection"]["order"] == "channels ordered by importance when the learngene was learned"
