"""Ordering a learngene's width by importance (`lgtool.order`): the full width computes what it did, the most
important units go where evenly spaced selection looks first, and a unit that does nothing scores nothing."""

import pytest
import torch
from conftest import tiny_gene
from test_teacher_cache import toy_data

from lgtool.base.errors import InputError
from lgtool.family import target_arch
from lgtool.materialize import evenly_spaced, expand
from lgtool.order import importance, order_learngene, permutations, permute, placed, selection_priority
from lgtool.training.view import View


def view_of(gene):
    return View.from_input_cfg(gene.meta.input.model_dump(), gene.arch.img_size, gene.arch.in_chans)


def test_selection_priority_lists_what_each_halving_keeps_first():
    assert selection_priority(8).tolist() == [0, 4, 2, 6, 1, 3, 5, 7]
    for n in (8, 32, 64):
        for m in (n // 2, n // 4):  # stride 2, 4: exactly the first m positions of the priority
            assert sorted(selection_priority(n)[:m].tolist()) == evenly_spaced(n, m).tolist()


def test_placed_puts_the_highest_scores_where_selection_keeps():
    scores = torch.tensor([0.1, 5.0, 0.2, 4.0, 0.3, 3.0, 0.4, 2.0])  # the odd units matter
    perm = placed(scores)
    assert sorted(perm.tolist()) == list(range(8))
    kept = perm[evenly_spaced(8, 4)]  # new positions selection keeps -> the old units they hold
    assert sorted(kept.tolist()) == [1, 3, 5, 7]
    assert perm[0].item() == 1  # the best unit where even a width of one looks


@pytest.mark.parametrize("method", ["sws", "tleg"])
def test_ordering_leaves_the_full_width_function_and_reorders_the_narrower(method):
    gene, data = tiny_gene(method), toy_data()
    ordered, info = order_learngene(gene, data, view_of(gene), images=32)
    assert info["images"] == 32 and ordered.meta.provenance["ordering"]["images"] == 32
    x = torch.randn(3, 1, 28, 28)
    for depth in (gene.arch.depth, 7):  # the Aux size and another depth
        torch.testing.assert_close(expand(ordered, depth=depth)(x), expand(gene, depth=depth)(x), atol=1e-5, rtol=1e-4)
    narrow = target_arch(gene, width=16)
    assert not torch.allclose(expand(ordered, narrow)(x), expand(gene, narrow)(x))
    assert {k: v.shape for k, v in ordered.tensors.items()} == {k: v.shape for k, v in gene.tensors.items()}


def test_a_neuron_that_writes_nothing_scores_nothing_and_is_dropped_first():
    gene, data = tiny_gene("sws"), toy_data()
    dead = 5
    gene.tensors["stage1.mlp.fc2.weight"][:, dead] = 0  # stage 1's hidden neuron 5 no longer reaches anything
    scores = importance(gene, data, view_of(gene), images=32)
    assert scores["mlp"][1][dead] == 0 and (scores["mlp"][1] > 0).sum() == len(scores["mlp"][1]) - 1
    assert (scores["mlp"][0] > 0).all()  # the other stage is untouched
    perm = permutations(gene, scores)["mlp"][1]
    assert perm[selection_priority(len(perm))[-1]].item() == dead  # the last position any halving keeps


def test_query_and_key_dimensions_move_together_within_their_head():
    gene, data = tiny_gene("sws"), toy_data()
    perms = permutations(gene, importance(gene, data, view_of(gene), images=16))
    heads, width = gene.arch.num_heads, gene.arch.embed_dim
    for kind in ("qk", "v"):
        for perm in perms[kind].values():
            dim = width // heads
            for h in range(heads):  # every head keeps its own dimensions
                assert sorted(perm[h * dim : (h + 1) * dim].tolist()) == list(range(h * dim, (h + 1) * dim))
    rows = permute(gene, perms).tensors["stage0.attn.qkv.weight"]
    qk = perms["qk"][0]
    e = perms["embed"]
    old = gene.tensors["stage0.attn.qkv.weight"]
    torch.testing.assert_close(rows[:width], old[qk][:, e])
    torch.testing.assert_close(rows[width : 2 * width], old[qk + width][:, e])


def test_wave_makes_its_own_widths_and_is_not_ordered():
    gene = tiny_gene("wave")
    with pytest.raises(InputError, match="makes its widths by its own rule"):
        order_learngene(gene, toy_data(), view_of(gene), images=8)
