"""Weight selection on hand-checked small tensors."""

import pytest
import torch

from lgtool.base.arch import Arch, build_vit
from lgtool.base.errors import InputError
from lgtool.baselines.weight_selection import evenly_spaced, layer_plan, layer_policies, select, weight_selection


def test_evenly_spaced_stride_and_linspace():
    assert evenly_spaced(8, 4).tolist() == [0, 2, 4, 6]  # 8 = 2 x 4: stride 2
    assert evenly_spaced(6, 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert evenly_spaced(5, 3).tolist() == [0, 2, 4]  # round(linspace(0, 4, 3))
    assert evenly_spaced(7, 3).tolist() == [0, 3, 6]


def test_select_per_dimension():
    t = torch.arange(24.0).reshape(4, 6)
    assert select(t, (2, 3)).tolist() == [[0.0, 2.0, 4.0], [12.0, 14.0, 16.0]]
    with pytest.raises(InputError, match="wider ancestor"):
        select(t, (8, 3))


def _vit(width, heads, depth, classes=10):
    return build_vit(
        Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=width, num_heads=heads, depth=depth, num_classes=classes)
    )


def test_weight_selection_takes_first_blocks_and_keeps_the_head_when_the_labels_match():
    big, small = _vit(8, 2, 3), _vit(4, 1, 2)
    big_state = big.state_dict()
    done = weight_selection(big_state, small)
    s = small.state_dict()
    assert done == {"layers": [0, 1], "layer_policy": "first", "head": "selected"}
    assert torch.equal(s["blocks.1.mlp.fc1.weight"], big_state["blocks.1.mlp.fc1.weight"][::2, ::2])
    assert torch.equal(s["blocks.0.attn.qkv.weight"], big_state["blocks.0.attn.qkv.weight"][::2, ::2])
    assert torch.equal(s["pos_embed"], big_state["pos_embed"][:, :, ::2])
    assert torch.equal(s["head.weight"], big_state["head.weight"][:, ::2])  # 10 classes both: the head fits
    assert torch.equal(s["head.bias"], big_state["head.bias"])


def test_weight_selection_reinitializes_the_head_when_the_labels_differ():
    big, small = _vit(8, 2, 3, classes=10), _vit(4, 1, 2, classes=5)
    fresh = small.head.weight.detach().clone()
    assert weight_selection(big.state_dict(), small)["head"] == "fresh"
    assert torch.equal(small.head.weight, fresh)  # timm's init, untouched
    assert torch.equal(small.blocks[0].norm1.weight, big.blocks[0].norm1.weight[::2])  # the rest is still cut


def test_layer_plans_first_spaced_and_repeated_past_the_ancestor():
    assert layer_plan(8, 4, "first") == [0, 1, 2, 3]
    assert layer_plan(8, 4, "spaced") == [0, 2, 4, 6]
    assert layer_plan(8, 3, "spaced") == [0, 4, 7]  # round(linspace(0, 7, 3))
    assert layer_plan(8, 12, "first") == layer_plan(8, 12, "spaced") == [0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7]
    assert layer_plan(8, 8, "spaced") == list(range(8))
    assert layer_policies(8, 4) == ("first", "spaced") and layer_policies(8, 8) == layer_policies(8, 12) == ("spaced",)


def test_weight_selection_repeats_ancestor_blocks_past_its_depth():
    big, deep = _vit(8, 2, 2), _vit(8, 2, 5)
    big_state = big.state_dict()
    assert weight_selection(big_state, deep, "spaced")["layers"] == [0, 0, 0, 1, 1]  # round(linspace(0, 1, 5))
    s = deep.state_dict()
    for i, j in enumerate([0, 0, 0, 1, 1]):
        assert torch.equal(s[f"blocks.{i}.attn.proj.weight"], big_state[f"blocks.{j}.attn.proj.weight"])
    s["blocks.0.attn.proj.weight"].add_(1)  # repeated blocks are copies, not views of one tensor
    assert not torch.equal(s["blocks.1.attn.proj.weight"], s["blocks.0.attn.proj.weight"])


def test_weight_selection_refuses_a_narrower_ancestor_or_one_without_vit_blocks():
    with pytest.raises(InputError, match="wider ancestor"):
        weight_selection(_vit(4, 1, 2).state_dict(), _vit(8, 2, 2))
    with pytest.raises(InputError, match="no ViT blocks"):
        weight_selection({"conv1.weight": torch.zeros(8, 1, 3, 3)}, _vit(4, 1, 2))
