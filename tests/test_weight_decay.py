"""AdamW's groups: weights decay; biases, norms, position embeddings, class tokens and what a model names in
`no_weight_decay()` (WAVE's scalers) do not; the decaying group first, as checkpoints store them."""

import pytest
from conftest import tiny_gene

from lgtool.base.arch import Arch, build_vit
from lgtool.materialize import build_aux
from lgtool.training.loop.train import param_groups


def groups(model, weight_decay=0.05):
    named = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, model.named_parameters(), weight_decay)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (weight_decay, 0.0)
    return {named[id(p)] for p in decay["params"]}, {named[id(p)] for p in no_decay["params"]}


def test_a_vit_decays_its_weights_only():
    vit = build_vit(Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=10))
    decay, no_decay = groups(vit)
    assert decay == {n for n, p in vit.named_parameters() if n.endswith(".weight") and p.ndim > 1}
    assert {"pos_embed", "blocks.0.norm1.weight", "blocks.1.attn.qkv.bias", "head.bias"} <= no_decay
    assert decay | no_decay == {n for n, _ in vit.named_parameters()}


@pytest.mark.parametrize("method", ["sws", "wave"])
def test_an_aux_net_decays_its_template_weights_only(method):
    aux = build_aux(tiny_gene(method))
    decay, no_decay = groups(aux, weight_decay=0.0)  # both groups even with no decay: a checkpoint keeps two
    assert "gene.pos_embed" in no_decay and "gene.head.weight" in decay
    if method == "sws":
        assert {"gene.stage0.attn.qkv.weight", "gene.stage2.mlp.fc2.weight"} <= decay
        assert {"gene.stage0.attn.qkv.bias", "gene.stage1.norm2.weight"} <= no_decay
    else:  # the scalers are named by `no_weight_decay()`; the per-layer vectors are 2-D and decay, as before
        assert {"gene.template.attn.qkv.weight", "gene.layerwise.attn.qkv.bias"} <= decay
        assert {"gene.scaler.attn.qkv.weight", "gene.scaler.mlp.fc2.weight"} <= no_decay
