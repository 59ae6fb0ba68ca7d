"""Learngenes seeded from the ancestor (`learn --init ancestor`): each rule's fit reproduces ancestors it can
represent exactly, width is reduced by weight selection's evenly spaced indices, non-block tensors are copied."""

import pytest
import torch

import lgtool
from lgtool.base.arch import Arch, build_vit
from lgtool.base.errors import InputError, UsageError
from lgtool.baselines.weight_selection import select
from lgtool.family import target_arch
from lgtool.materialize import desc_state_dict
from lgtool.rules import tleg, wave
from lgtool.training.seed import seed_from_ancestor

FAMILY = dict(img_size=28, patch_size=7, in_chans=1, num_classes=10)


def ancestor_state(depth: int, width: int = 64, seed: int = 0, **overrides) -> dict:
    """A tiny timm ViT's state dict with every tensor perturbed (no symmetric zeros or ones left)."""
    torch.manual_seed(seed)
    state = build_vit(Arch(**{**FAMILY, "embed_dim": width, "depth": depth, "num_heads": 1, **overrides})).state_dict()
    return {k: v + 0.1 * torch.randn(v.shape) for k, v in state.items()}


def gene(method: str, width: int = 64, **options):
    return lgtool.init_learngene(method, width=width, num_heads=1, **FAMILY, **options)


def assert_reproduces(seeded, anc: dict, depth: int):
    state = desc_state_dict(seeded, target_arch(seeded, depth))
    assert state.keys() == anc.keys()
    for k in anc:
        torch.testing.assert_close(state[k], anc[k], rtol=1e-5, atol=1e-5, msg=k)


def test_tleg_from_two_layers_reproduces_both():
    anc = ancestor_state(depth=2)
    seeded = seed_from_ancestor(gene("tleg", aux_depth=4), anc)
    assert_reproduces(seeded, anc, depth=2)  # coefficients 0 and 1/2: the two points the line was fitted at


def test_tleg_is_the_least_squares_line():
    anc = ancestor_state(depth=5)
    seeded = seed_from_ancestor(gene("tleg"), anc)
    c = torch.tensor([tleg.coefficient(layer, 5) for layer in range(1, 6)])
    design = torch.stack([torch.ones(5), c], 1)
    ys = torch.stack([anc[f"blocks.{i}.attn.proj.weight"].flatten() for i in range(5)])
    fit = torch.linalg.lstsq(design.double(), ys.double()).solution.float()
    torch.testing.assert_close(seeded.tensors["intercept.attn.proj.weight"].flatten(), fit[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seeded.tensors["slope.attn.proj.weight"].flatten(), fit[1], atol=1e-5, rtol=1e-5)


def test_sws_one_layer_per_stage_reproduces_the_ancestor():
    anc = ancestor_state(depth=3)
    seeded = seed_from_ancestor(gene("sws", stages=[1, 1, 1]), anc)
    assert_reproduces(seeded, anc, depth=3)


def test_sws_stage_is_the_mean_of_its_ancestor_layers():
    anc = ancestor_state(depth=4)  # even split over 3 stages: layers (0, 1), (2,), (3,)
    seeded = seed_from_ancestor(gene("sws", stages=[1, 1, 1]), anc)
    mean = (anc["blocks.0.mlp.fc1.weight"] + anc["blocks.1.mlp.fc1.weight"]) / 2
    torch.testing.assert_close(seeded.tensors["stage0.mlp.fc1.weight"], mean)
    assert torch.equal(seeded.tensors["stage2.mlp.fc1.weight"], anc["blocks.3.mlp.fc1.weight"])
    shallow = ancestor_state(depth=2)  # fewer layers than stages: each stage copies the layer at its depth
    seeded = seed_from_ancestor(gene("sws", stages=[1, 1, 1]), shallow)
    copied = [seeded.tensors[f"stage{s}.mlp.fc1.weight"] for s in range(3)]
    for t, i in zip(copied, (0, 0, 1), strict=True):
        assert torch.equal(t, shallow[f"blocks.{i}.mlp.fc1.weight"])


def kron_stack(depth: int, n: int, r: int, c: int, w: int, seed: int = 0):
    """An exact sum of n Kronecker products per layer, built with torch.kron (independent of kron_weight)."""
    g = torch.Generator().manual_seed(seed)
    scalers, templates = torch.randn(depth, n, r, c, generator=g), torch.randn(n, w, w, generator=g)
    return torch.stack([sum(torch.kron(scalers[layer, t], templates[t]) for t in range(n)) for layer in range(depth)])


def test_nearest_kron_recovers_an_exact_sum_of_kronecker_products():
    stack = kron_stack(depth=3, n=2, r=3, c=2, w=4)
    scalers, templates = wave.nearest_kron(stack, w=4, n=2)
    assert scalers.shape == (3, 2, 3, 2) and templates.shape == (2, 4, 4)
    torch.testing.assert_close(templates.flatten(1).norm(dim=1), torch.ones(2))
    torch.testing.assert_close(wave.kron_weight(scalers, templates), stack, atol=1e-4, rtol=1e-4)


def test_wave_reproduces_a_kronecker_ancestor_at_the_aux_size():
    anc, w, n = ancestor_state(depth=4), 16, 3
    for seed, slot in enumerate(wave.MATRICES):
        rows, cols = anc[f"blocks.0.{slot}"].shape
        for i, layer in enumerate(kron_stack(4, n, rows // w, cols // w, w, seed)):
            anc[f"blocks.{i}.{slot}"] = layer / 10
    seeded = seed_from_ancestor(gene("wave", aux_depth=4, template_size=w, num_templates=n), anc)
    assert_reproduces(seeded, anc, depth=4)


def test_wave_resamples_the_ancestor_to_the_aux_depth():
    anc = ancestor_state(depth=2)
    seeded = seed_from_ancestor(gene("wave", aux_depth=3, template_size=16, num_templates=3), anc)
    mid = (anc["blocks.0.norm1.weight"] + anc["blocks.1.norm1.weight"]) / 2
    torch.testing.assert_close(seeded.tensors["layerwise.norm1.weight"][1], mid)
    assert seeded.tensors["scaler.attn.proj.weight"].shape == (3, 3, 4, 4)


@pytest.mark.parametrize(
    "method, options",
    [("sws", dict(stages=[1, 1])), ("tleg", dict(aux_depth=3)), ("wave", dict(aux_depth=3, template_size=16))],
)
def test_narrower_gene_seeds_from_the_evenly_selected_ancestor(method, options):
    anc = ancestor_state(depth=3, width=64)
    narrow = build_vit(Arch(**FAMILY, embed_dim=32, depth=3, num_heads=1)).state_dict()
    fresh = gene(method, width=32, **options)
    a = seed_from_ancestor(fresh, anc)
    b = seed_from_ancestor(fresh, {k: select(v, narrow[k].shape) for k, v in anc.items()})
    assert a.tensors.keys() == b.tensors.keys()
    for k in a.tensors:
        assert torch.equal(a.tensors[k], b.tensors[k]), k
    assert torch.equal(a.tensors["patch_embed.proj.weight"], anc["patch_embed.proj.weight"][::2])  # stride 64/32


def test_wider_gene_than_ancestor_is_refused():
    with pytest.raises(InputError, match="seeding needs an ancestor at least as wide as the learngene"):
        seed_from_ancestor(gene("tleg", width=64), ancestor_state(depth=2, width=32))


def test_non_block_tensors_copied_when_they_have_a_counterpart(tmp_path):
    fresh = gene("tleg", aux_depth=2)
    anc = ancestor_state(depth=2, num_classes=5, class_token=True)  # other classes, one more token
    seeded = seed_from_ancestor(fresh, anc)
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"):
        assert torch.equal(seeded.tensors[k], anc[k]), k
    for k in ("pos_embed", "head.weight", "head.bias"):
        assert torch.equal(seeded.tensors[k], fresh.tensors[k]), k
    prov = seeded.meta.provenance
    assert prov["init"] == "ancestor" and prov["seeded"]["fresh_init"] == ["pos_embed", "head.weight", "head.bias"]
    assert seeded.meta.model_dump(exclude={"provenance"}) == fresh.meta.model_dump(exclude={"provenance"})
    seeded.save(tmp_path / "g.safetensors")  # a valid learngene: shapes match its metadata
    assert lgtool.load_learngene(tmp_path / "g.safetensors").meta.provenance["init"] == "ancestor"


def test_bad_init_is_a_usage_error_before_any_data(run_cli, tmp_path):
    from lgtool.training.settings import LearnConfig

    with pytest.raises(UsageError, match="--init must be one of official, ancestor, got 'paper'"):
        LearnConfig(ancestor="no-such-ancestor", method="tleg", data=str(tmp_path / "missing"), init="paper")
    code, _, err = run_cli("learn", "--ancestor", "x", "--data", tmp_path / "missing", "--init", "paper")
    assert code == 2 and "--init must be one of official, ancestor, got 'paper'" in err


def test_wave_seeds_the_templates_the_ancestor_can_give_and_keeps_the_papers_init_for_the_rest():
    """Width 64 in one 64-wide tile per proj matrix, Aux depth 2: that tile matrix has 2 rows, so of 4 templates
    2 are fitted (reproducing the ancestor's proj exactly) and 2, with their scalers, stay as initialized."""
    anc, fresh = ancestor_state(depth=2), gene("wave", aux_depth=2, num_templates=4)
    seeded = seed_from_ancestor(fresh, anc)
    slot = "attn.proj.weight"
    assert seeded.meta.provenance["seeded"]["partly"] == {f"template.{slot}": "2 of 4 templates seeded (the tile "
                                                          "matrix has rank 2 at most)"}  # fmt: skip
    for name in (f"template.{slot}", f"scaler.{slot}"):
        assert seeded.tensors[name].shape == fresh.tensors[name].shape
    torch.testing.assert_close(seeded.tensors[f"template.{slot}"][2:], fresh.tensors[f"template.{slot}"][2:])
    torch.testing.assert_close(seeded.tensors[f"scaler.{slot}"][:, 2:], fresh.tensors[f"scaler.{slot}"][:, 2:])
    fitted = wave.kron_weight(seeded.tensors[f"scaler.{slot}"][:, :2], seeded.tensors[f"template.{slot}"][:2])
    torch.testing.assert_close(fitted, torch.stack([anc[f"blocks.{i}.{slot}"] for i in range(2)]))
    assert "partly" not in seed_from_ancestor(gene("wave", aux_depth=2, num_templates=2), anc).meta.provenance["seeded"]
