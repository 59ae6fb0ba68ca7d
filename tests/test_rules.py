"""Each rule's formula on small hand-computed cases."""

import pytest
import torch

from lgtool.base.arch import Arch
from lgtool.base.errors import InputError
from lgtool.rules import sws, tleg, wave


def test_tleg_coefficients_for_depth_6():
    assert [tleg.coefficient(layer, 6) for layer in range(1, 7)] == [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]


def test_tleg_layer_is_intercept_plus_coefficient_times_slope():
    arch = Arch(embed_dim=4, num_heads=1, depth=12)
    tensors = {
        f"{t}.{slot}": torch.randn(shape) for t in ("intercept", "slope") for slot, shape in arch.slot_shapes().items()
    }
    target = Arch(embed_dim=4, num_heads=1, depth=3)
    layers = tleg.blocks(tleg.Rule(), tensors, arch, target, tleg.layer_plan(tleg.Rule(), arch, target))
    for slot in arch.slot_shapes():
        for i, expected_c in enumerate([0.0, 1 / 3, 2 / 3]):
            expected = tensors[f"intercept.{slot}"] + expected_c * tensors[f"slope.{slot}"]
            assert torch.equal(layers[i][slot], expected)


def test_tleg_layernorm_slope_starts_at_zero():
    arch = Arch(embed_dim=8, num_heads=2, depth=12)
    t = tleg.init_templates(tleg.Rule(), arch, torch.Generator().manual_seed(0))
    assert torch.equal(t["slope.norm1.weight"], torch.zeros(8)) and torch.equal(
        t["intercept.norm1.weight"], torch.ones(8)
    )
    assert t["slope.attn.qkv.weight"].std() > 0.01 and not torch.equal(
        t["slope.attn.qkv.weight"], t["intercept.attn.qkv.weight"]
    )


@pytest.mark.parametrize(
    "depth, sizes",
    [(12, [3, 3, 2, 2, 2]), (7, [2, 2, 1, 1, 1]), (5, [1, 1, 1, 1, 1]), (13, [3, 3, 3, 2, 2])],
)
def test_sws_even_split_remainder_first(depth, sizes):
    rule = sws.Rule()  # Aux 3,3,4,3,3
    stages = sws.stage_map(rule, depth)
    assert [stages.count(s) for s in range(5)] == sizes
    assert stages == sorted(stages)  # contiguous, in order


def test_sws_aux_depth_uses_aux_stage_sizes():
    assert sws.stage_map(sws.Rule(), 16) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]


def test_sws_layer_map_override_and_errors():
    rule = sws.Rule(stage_sizes=[2, 1, 2])
    assert sws.stage_map(rule, 4, [2, 2, 0, 1]) == [2, 2, 0, 1]
    with pytest.raises(InputError, match="depth 2 is smaller than the 3 SWS stages"):
        sws.stage_map(rule, 2)
    with pytest.raises(InputError, match="3 entries but the depth is 4"):
        sws.stage_map(rule, 4, [0, 1, 2])
    with pytest.raises(InputError, match="names stage 3"):
        sws.stage_map(rule, 4, [0, 1, 2, 3])


def test_sws_layers_share_their_stage_tensor():
    arch = Arch(embed_dim=4, num_heads=1, depth=5)
    rule = sws.Rule(stage_sizes=[2, 3])
    tensors = {f"stage{s}.{slot}": torch.randn(shape) for s in range(2) for slot, shape in arch.slot_shapes().items()}
    layers = sws.blocks(rule, tensors, arch, arch, sws.layer_plan(rule, arch, arch))
    assert all(layers[i]["mlp.fc1.weight"] is tensors["stage0.mlp.fc1.weight"] for i in (0, 1))
    assert all(layers[i]["mlp.fc1.weight"] is tensors["stage1.mlp.fc1.weight"] for i in (2, 3, 4))


def test_wave_weight_is_sum_of_kronecker_products():
    scalers = torch.randn(2, 3, 4, 2)  # 2 layers, 3 templates, a 4x2 grid
    templates = torch.randn(3, 5, 5)
    w = wave.kron_weight(scalers, templates)
    assert w.shape == (2, 20, 10)
    for layer in range(2):
        expected = sum(torch.kron(scalers[layer, t], templates[t]) for t in range(3))
        torch.testing.assert_close(w[layer], expected)


def test_wave_resample_keeps_tile_contents_and_endpoints():
    x = torch.arange(12.0).reshape(3, 4)  # 3 layers
    y = wave.resample(x, 0, 5)  # linear in relative depth: first and last layers kept
    assert torch.equal(y[0], x[0]) and torch.equal(y[-1], x[-1]) and torch.allclose(y[2], x[1])
    v = torch.tensor([1.0, 2.0, 10.0, 20.0])  # two tiles of 2 entries
    assert torch.equal(wave.resample(v, 0, 6, tile=2), torch.tensor([1.0, 2.0, 5.5, 11.0, 10.0, 20.0]))
    assert wave.resample(v, 0, 4, tile=2) is v


def test_wave_qkv_grid_resampled_per_q_k_v():
    s = torch.zeros(1, 1, 3, 1)
    s[0, 0] = torch.tensor([[1.0], [2.0], [3.0]])  # q, k, v rows of a 1-tile-wide net
    r = wave.resample(s, 2, 6, groups=3)
    assert r[0, 0, :, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]  # q never mixes with k


def test_wave_widths_must_be_multiples_of_template_and_head():
    arch = Arch(embed_dim=32, num_heads=2, depth=4)
    rule = wave.Rule(template_size=16, head_dim=16)
    wave.check_width(rule, arch, 48)
    with pytest.raises(InputError, match="multiple of 16"):
        wave.check_width(rule, arch, 40)
