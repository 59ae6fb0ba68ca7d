"""One materialization path: the Aux-Net and the expanded Desc-Net compute the same function."""

import pytest
import torch
from conftest import tiny_gene
from safetensors.torch import load_file, save_file

import lgtool
from lgtool.base.errors import InputError
from lgtool.family import describe_layers, target_arch
from lgtool.materialize import materialize


def test_expanding_at_aux_size_reproduces_the_aux_net(method):
    gene = tiny_gene(method)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        aux_logits = lgtool.build_aux(gene).eval()(x)
        desc_logits = lgtool.expand(gene)(x)
    assert desc_logits.shape == (4, 10)
    assert (aux_logits - desc_logits).abs().max().item() < 1e-5


def test_a_half_precision_learngene_expands_to_its_aux_net_function_in_float32(method):
    gene = tiny_gene(method)
    half = lgtool.learngene.Learngene(gene.meta, {k: v.half() for k, v in gene.tensors.items()})
    x = torch.randn(4, 1, 28, 28)
    desc = lgtool.expand(half)
    assert {p.dtype for p in desc.state_dict().values()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(lgtool.build_aux(half).eval()(x), desc(x))  # computed alike: not a rounding of it


def test_desc_net_is_a_plain_timm_model(method):
    from timm.models.vision_transformer import VisionTransformer

    model = lgtool.expand(tiny_gene(method), depth=7)
    assert type(model) is VisionTransformer and len(model.blocks) == 7


@pytest.mark.parametrize("depth", [None, 7], ids=["aux-depth", "depth7"])
@pytest.mark.parametrize("method", ["sws", "wave"])  # SWS layers share a stage's block; WAVE layers slice stacks
def test_desc_net_state_dict_gives_every_tensor_storage_of_its_own(method, depth):
    """What a Desc-Net folder is saved from: no two tensors share storage, and each storage holds exactly
    its tensor (not a slice of a larger one), so every block is its own contiguous tensors."""
    from lgtool.materialize import desc_state_dict

    state = desc_state_dict((gene := tiny_gene(method)), target_arch(gene, depth))
    owners = {}
    for name, t in state.items():
        storage = t.untyped_storage()
        other = owners.setdefault(storage.data_ptr(), name)
        assert other == name, f"{name} shares storage with {other}"
        assert t.is_contiguous() and t.storage_offset() == 0, name
        assert storage.nbytes() == t.numel() * t.element_size(), f"{name} is a view into a larger storage"


def test_expand_writes_the_desc_net_as_built_and_builds_it_on_one_thread(tmp_path, monkeypatch):
    """SWS's layers of one stage are the learngene's own tensors, written as they are (no copy per layer); the
    learngene is read and the Desc-Net built on one torch thread, and every thread is given back after."""
    import lgtool.materialize
    from lgtool.training.descnet import ExpandConfig, expand_folder

    built, real = [], lgtool.materialize.desc_tensors

    def desc_tensors(*args, **kwargs):
        state = real(*args, **kwargs)
        built.append((torch.get_num_threads(), state))
        return state

    monkeypatch.setattr(lgtool.materialize, "desc_tensors", desc_tensors)
    threads = torch.get_num_threads()
    gene = tiny_gene("sws").save(tmp_path / "g.safetensors")
    expand_folder(gene, tmp_path / "desc", ExpandConfig(depth=5))
    [(during, state)] = built
    assert during == 1 and torch.get_num_threads() == threads
    stages = {state[f"blocks.{i}.mlp.fc1.weight"].data_ptr() for i in range(5)}
    assert len(stages) == 3  # tiny_gene's SWS has 3 stages: 5 layers, 3 tensors
    written = load_file(tmp_path / "desc" / "model.safetensors")
    assert written.keys() == state.keys() and all(torch.equal(written[k], v) for k, v in state.items())


def test_tleg_is_built_a_layer_at_a_time_as_it_is_written(tmp_path, monkeypatch):
    """Without --check, expand writes a TLEG Desc-Net as it builds it: every layer but the first is built when the
    writer comes to it, once, and the file holds the same bytes as the Desc-Net built whole."""
    import lgtool.rules.tleg
    from lgtool.hub import save_tensors
    from lgtool.materialize import Later, desc_state_dict, desc_tensors

    gene = tiny_gene("tleg")
    target = target_arch(gene, 12)  # layers 10 and 11 come between 1 and 2 in the file's (name) order
    built, blocks = [], lgtool.rules.tleg.blocks
    monkeypatch.setattr(lgtool.rules.tleg, "blocks", lambda *a: (built.append(a[-1]), blocks(*a))[1])
    state = desc_tensors(gene, target, by_layer=True)
    assert sum(isinstance(v, Later) for v in state.values()) == 11 * len(target.slot_shapes())
    assert len(built) == 1
    save_tensors(state, tmp_path / "by-layer.safetensors", metadata={"format": "pt"})
    plan = [c for layer in built for c in layer]  # in the file's order: layers 0, 1, 10, 11, 2, ...
    assert len(built) == 12 and sorted(plan) == describe_layers(gene, target)  # each of the 11 others once
    save_file(desc_state_dict(gene, target), tmp_path / "whole.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "by-layer.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


def test_aux_gradients_reach_every_template(method):
    aux = lgtool.build_aux(tiny_gene(method)).train()
    aux(torch.randn(2, 1, 28, 28)).logsumexp(-1).sum().backward()
    params = dict(aux.gene.named_parameters())
    assert set(params) == set(tiny_gene(method).tensors)  # the gene's own names, nothing else
    no_grad = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_sws_shared_stage_gets_gradient_of_all_its_layers():
    gene = tiny_gene("sws")  # stages 2,1,2
    aux = lgtool.build_aux(gene)
    x = torch.randn(2, 1, 28, 28)
    aux(x).sum().backward()
    grad = aux.gene.stage0.mlp.fc2.weight.grad.clone()
    # The same loss through the materialized state dict with stage0 used by two separate layer tensors.
    state = {k: v.detach().clone().requires_grad_(True) for k, v in materialize(gene).items()}
    torch.func.functional_call(lgtool.expand(gene).train(), state, (x,)).sum().backward()
    torch.testing.assert_close(grad, state["blocks.0.mlp.fc2.weight"].grad + state["blocks.1.mlp.fc2.weight"].grad)


def test_tleg_expansion_samples_the_same_line():
    gene = tiny_gene("tleg")  # Aux depth 4
    state = materialize(gene, target_arch(gene, 8))
    # Layer 3 of 8 (coefficient 2/8) equals layer 2 of the Aux (coefficient 1/4).
    torch.testing.assert_close(state["blocks.2.attn.qkv.weight"], materialize(gene)["blocks.1.attn.qkv.weight"])


def test_head_copied_only_for_same_class_count(method):
    gene = tiny_gene(method)
    assert "head.weight" in materialize(gene, target_arch(gene, 5))
    state = materialize(gene, target_arch(gene, 5, num_classes=3))
    assert "head.weight" not in state
    assert lgtool.expand(gene, depth=5, num_classes=3).head.weight.shape == (3, 32)


def test_wave_makes_other_widths_with_fixed_head_dim():
    gene = tiny_gene("wave")  # width 32, 2 heads of 16, templates 16x16
    model = lgtool.expand(gene, depth=6, width=64)
    assert model.embed_dim == 64 and model.blocks[0].attn.num_heads == 4 and len(model.blocks) == 6
    assert model(torch.randn(2, 1, 28, 28)).isfinite().all()


@pytest.mark.parametrize("method_", ["sws", "tleg"])
def test_depth_only_methods_refuse_other_widths(method_):
    with pytest.raises(InputError, match="makes its Aux width 32 and narrower"):
        lgtool.expand(tiny_gene(method_), depth=4, width=64)


def test_depth_must_be_positive(method):
    with pytest.raises(InputError, match="at least 1"):
        lgtool.expand(tiny_gene(method), depth=0)


def test_a_size_that_cannot_fit_in_memory_is_refused_before_any_work(run_cli, tmp_path):
    """A WAVE learngene widens: 100 layers at width 16,384 would need about a terabyte."""
    gene = tmp_path / "wave.safetensors"
    tiny_gene("wave").save(gene)
    code, out, err = run_cli("expand", gene, "--depth", 100, "--width", 16384, "-o", tmp_path / "huge")
    assert code == 3 and out == "" and "Traceback" not in err
    assert err.count("error:") == 1 and "GiB of memory available" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wave.safetensors"]


def test_check_memory_compares_three_float32_copies_with_what_is_available(monkeypatch):
    import lgtool.base.arch as arch

    small = arch.Arch(embed_dim=64, num_heads=2, depth=2, img_size=28, patch_size=7, in_chans=1, num_classes=10)
    need = small.num_params() * 4 * 3
    monkeypatch.setattr(arch, "available_memory", lambda: need)
    arch.check_memory(small, "expand")  # fits exactly
    monkeypatch.setattr(arch, "available_memory", lambda: need - 1)
    with pytest.raises(InputError, match="expand: a model of"):
        arch.check_memory(small, "expand")
    monkeypatch.setattr(arch, "available_memory", lambda: None)  # unknown: not refused
    arch.check_memory(small, "expand")
