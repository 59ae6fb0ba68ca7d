"""Family-aware distillation: sizes sampled by the sandwich rule, trained through the same materialization
`expand` ships, WAVE's own scalers per trained size, and the Aux size alone as plain learning."""

import json

import pytest
import torch
from conftest import needs_fashion_mnist, tiny_gene

import lgtool
from lgtool.base.errors import InputError, UsageError
from lgtool.family import family_grid, family_targets, makeable, parse_sizes, sandwich, size_key, with_size_tensors
from lgtool.learngene import load_learngene, read_header
from lgtool.materialize import build_aux, expand


def test_sizes_parse_as_ranges_steps_and_lists():
    assert parse_sizes("2-6", "--family-depths") == [2, 3, 4, 5, 6]
    assert parse_sizes("2-12:2", "--family-depths") == [2, 4, 6, 8, 10, 12]
    assert parse_sizes("8,2,4,4", "--family-depths") == [2, 4, 8]
    for bad in ("", "two", "0-3", "4-2"):
        with pytest.raises(UsageError, match="--family-depths"):
            parse_sizes(bad, "--family-depths")


def test_sandwich_always_trains_the_largest_and_the_smallest():
    g = torch.Generator().manual_seed(0)
    draws = [sandwich(7, 3, g) for _ in range(50)]
    assert all(d[:2] == [6, 0] and len(set(d)) == 3 and 0 < d[2] < 6 for d in draws)
    assert len({d[2] for d in draws}) == 5  # every middle size comes up
    assert sandwich(2, 3, g) == [0, 1]


def test_family_targets_are_what_expand_makes_cheapest_first_with_the_aux_size():
    gene = tiny_gene("tleg")  # Aux depth 4, width 32
    targets = family_targets(gene, family_grid([2, 6], [32, 16]))
    assert [size_key(a) for a in targets] == ["d2-w16", "d6-w16", "d2-w32", "d4-w32", "d6-w32"]
    assert gene.arch in targets
    assert makeable(tiny_gene("sws"), [(1, None), (3, None), (4, 64), (4, 16)]) == [(3, None), (4, 16)]
    with pytest.raises(InputError, match="depth 1 is smaller than the 3 SWS stages"):
        family_targets(tiny_gene("sws"), [(1, None)])


@pytest.mark.parametrize("method", ["sws", "tleg", "wave"])
def test_what_a_family_step_trains_is_exactly_what_expand_ships(method):
    gene = tiny_gene(method)
    targets = family_targets(gene, family_grid([3, 5], [32, 64] if method == "wave" else None))
    gene = with_size_tensors(gene, targets)
    aux = build_aux(gene, family=targets, samples=2).train()
    x = torch.randn(3, 1, 28, 28)
    picks = sandwich(len(targets), 2, aux._draw_generator())
    stacked = aux(x)
    assert stacked.shape == (2, 3, 10)
    shipped = aux.to_learngene()
    for logits, i in zip(stacked, picks, strict=True):
        torch.testing.assert_close(logits, expand(shipped, targets[i])(x), rtol=1e-5, atol=1e-5)
    assert aux.family_images.tolist() == [3 if i in picks else 0 for i in range(len(targets))]
    assert aux.eval()(x).shape == (3, 10)  # evaluation: the Aux size


def test_wave_sizes_get_scalers_of_their_own_and_only_sampled_ones_learn():
    gene = tiny_gene("wave")  # Aux depth 4, width 32
    targets = family_targets(gene, family_grid([2, 4], [32, 64]))
    grown = with_size_tensors(gene, targets)
    assert sorted(grown.meta.sizes) == [(2, 32), (2, 64), (4, 64)]
    aux = build_aux(grown, family=targets, samples=2).train()
    aux(torch.randn(2, 1, 28, 28)).sum().backward()
    picked = {size_key(targets[i]) for i in sandwich(len(targets), 2, torch.Generator().manual_seed(0))}
    for name, p in aux.gene.named_parameters():
        if name.startswith("sized."):
            key = "d{}-w{}".format(*name.split(".")[1][1:].split("w"))
            assert (p.grad is not None) == (key in picked), name


def test_a_learngene_with_sizes_round_trips_and_a_missing_sized_tensor_is_refused(tmp_path):
    gene = with_size_tensors(tiny_gene("wave"), family_targets(tiny_gene("wave"), family_grid([2], [32, 64])))
    gene.save(tmp_path / "g.safetensors")
    back = load_learngene(tmp_path / "g.safetensors")
    assert back.meta.sizes == gene.meta.sizes and back.tensors.keys() == gene.tensors.keys()
    name = next(k for k in gene.tensors if k.startswith("sized."))
    lame = lgtool.Learngene(gene.meta, {k: v for k, v in gene.tensors.items() if k != name})
    lame.meta.tensors.pop(name)
    lame.save(tmp_path / "lame.safetensors")
    with pytest.raises(InputError, match="tensors do not match the metadata"):
        read_header(tmp_path / "lame.safetensors")


def test_sizes_are_refused_where_the_rule_has_no_size_specific_tensors():
    from pydantic import ValidationError

    from lgtool.learngene import GeneMeta

    raw = tiny_gene("tleg").meta.model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="no size-specific tensors"):
        GeneMeta.model_validate({**raw, "sizes": [(2, 32)]})
    raw = tiny_gene("wave").meta.model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="not the Aux size"):
        GeneMeta.model_validate({**raw, "sizes": [(4, 32)]})
    with pytest.raises(ValidationError, match="multiple of"):
        GeneMeta.model_validate({**raw, "sizes": [(4, 40)]})


@needs_fashion_mnist
def test_a_family_of_the_aux_size_alone_is_todays_learning_bit_for_bit(ancestor, tmp_path):
    from lgtool.training.learn import learn
    from lgtool.training.settings import LearnConfig, TrainConfig

    cfg = TrainConfig(epochs=1, batch_size=64, lr=2e-3, warmup_epochs=0.2)
    common = dict(ancestor=str(ancestor), method="tleg", width=32, aux_depth=4, train_samples=1000)
    learn(LearnConfig(output=tmp_path / "plain.safetensors", **common), cfg)
    learn(LearnConfig(output=tmp_path / "fam.safetensors", family=[(4, None)], **common), cfg)
    a, b = (load_learngene(tmp_path / f) for f in ("plain.safetensors", "fam.safetensors"))
    assert a.tensors.keys() == b.tensors.keys() and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert "family" not in b.meta.provenance


@needs_fashion_mnist
def test_a_family_aware_wave_learngene_expands_at_a_trained_size_with_no_calibration(ancestor, tmp_path, run_cli):
    from lgtool.family import target_arch
    from lgtool.rules.wave import resize
    from lgtool.training.data import load_data
    from lgtool.training.learn import learn
    from lgtool.training.loop import evaluate
    from lgtool.training.settings import LearnConfig, TrainConfig

    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3, warmup_epochs=0.2)
    settings = LearnConfig(ancestor=str(ancestor), method="wave", output=tmp_path / "w.safetensors", width=32,
                           aux_depth=4, num_templates=4, train_samples=2000,
                           family=family_grid([2, 4], [32, 64]))  # fmt: skip
    result = learn(settings, cfg)
    assert set(result["family_images"]) == {"d2-w32", "d4-w32", "d2-w64", "d4-w64"}
    gene = load_learngene(tmp_path / "w.safetensors")
    assert (2, 64) in gene.meta.sizes and gene.meta.provenance["family"]["samples"] == 3
    target = target_arch(gene, depth=2, width=64)
    stored = gene.tensors["sized.d2w64.scaler.mlp.fc1.weight"]
    resampled = resize(gene.rule, {"scaler.mlp.fc1.weight": gene.tensors["scaler.mlp.fc1.weight"]}, gene.arch, target)
    assert not torch.allclose(stored, resampled["scaler.mlp.fc1.weight"])  # it trained, from where calibration starts
    model = expand(gene, target)  # no calibration
    assert torch.equal(model.blocks[0].mlp.fc1.weight, expand(gene, depth=2, width=64).blocks[0].mlp.fc1.weight)
    data = load_data("fashion-mnist")
    assert evaluate(model, data.test, data.view) > 0.4  # chance 0.10
    code, out, err = run_cli(
        "expand", tmp_path / "w.safetensors", "--depth", "2", "--width", "64", "-o", tmp_path / "d"
    )
    assert code == 0, err
    assert "scalers: trained at this size" in out  # and the lineage in config.json says so too
    lineage = json.loads((tmp_path / "d" / "config.json").read_text())["lgtool"]
    assert lineage["size_specific"].startswith("trained at this size")
