"""Weight selection on hand-checked small tensors."""

import pytest
import torch

from lgtool.arch import Arch, build_vit
from lgtool.baselines import evenly_spaced, select, weight_selection
from lgtool.errors import InputError


def test_evenly_spaced_stride_and_linspace():
    assert evenly_spaced(8, 4).tolist() == [0, 2, 4, 6]  # 8 = 2 x 4: stride 2
    assert evenly_spaced(6, 6).tolist() == [0, 1, 2, 3, 4, 5]
    assert evenly_spaced(5, 3).tolist() == [0, 2, 4]  # round(linspace(0, 4, 3))
    assert evenly_spaced(7, 3).tolist() == [0, 3, 6]


def test_select_per_dimension():
    t = torch.arange(24.0).reshape(4, 6)
    assert select(t, (2, 3)).tolist() == [[0.0, 2.0, 4.0], [12.0, 14.0, 16.0]]
    with pytest.raises(InputError, match="larger ancestor"):
        select(t, (8, 3))


def test_weight_selection_takes_first_blocks_and_keeps_fresh_head():
    big = build_vit(Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=8, num_heads=2, depth=3, num_classes=10))
    small_arch = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=4, num_heads=1, depth=2, num_classes=10)
    small = build_vit(small_arch)
    head = small.head.weight.detach().clone()
    big_state = big.state_dict()
    weight_selection(big_state, small)
    s = small.state_dict()
    assert torch.equal(s["blocks.1.mlp.fc1.weight"], big_state["blocks.1.mlp.fc1.weight"][::2, ::2])
    assert torch.equal(s["blocks.0.attn.qkv.weight"], big_state["blocks.0.attn.qkv.weight"][::2, ::2])
    assert torch.equal(s["pos_embed"], big_state["pos_embed"][:, :, ::2])
    assert torch.equal(s["head.weight"], head)  # the classifier is not inherited
    with pytest.raises(InputError, match="ancestor too small"):
        weight_selection(big_state, build_vit(small_arch.model_copy(update={"depth": 4})))
