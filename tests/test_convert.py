"""`lgtool convert`: checkpoints in the official SWS/TLEG Aux-Net layouts (built here with random tensors, the
official key names and container keys, and an argparse.Namespace in `args`) become learngenes whose expansion is
exactly the official formula; anything else is refused in one line, and nothing pickled ever runs."""

import argparse
import hashlib
import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import lgtool
from lgtool.base.compat import import_timm
from lgtool.convert import OFFICIAL_EPS
from lgtool.materialize import build_aux

MODULES = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
D, HEADS, C, IMG, P, CLASSES = 32, 4, 1, 28, 7, 10
SWS_STAGES = (2, 1, 2)
TLEG_AUX_DEPTH = 4


def _shapes(d):
    return {
        "norm1": [(d,), (d,)],
        "attn.qkv": [(3 * d, d), (3 * d,)],
        "attn.proj": [(d, d), (d,)],
        "norm2": [(d,), (d,)],
        "mlp.fc1": [(4 * d, d), (4 * d,)],
        "mlp.fc2": [(d, 4 * d), (d,)],
    }


def official_state(method, seed=0, d=D, classes=CLASSES, stages=SWS_STAGES):
    """An Aux-Net state dict in the official key layout, random tensors."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    state = {
        "pos_embed": r(1, (IMG // P) ** 2, d),
        "patch_embed.proj.weight": r(d, C, P, P),
        "patch_embed.proj.bias": r(d),
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
        "head.weight": r(classes, d),
        "head.bias": r(classes),
    }
    for module, (w, b) in _shapes(d).items():
        if method == "sws":
            for s in range(len(stages)):
                state[f"blocks.block.{module}.instances.{s}.weight"] = (1 + r(*w)) if "norm" in module else r(*w)
                state[f"blocks.block.{module}.instances.{s}.bias"] = r(*b)
        else:
            for part, shape in (("weight", w), ("bias", b)):
                for kind in ("base", "ilayer"):
                    base = 1 if ("norm" in module and part == "weight" and kind == "base") else 0
                    state[f"blocks.block.{module}.instances.0.{part}_{kind}"] = base + r(*shape)
    return state


def official_checkpoint(method, path, model=None, **args):
    """checkpoint.pth as the official main.py saves it."""
    model = model or ("aux_test_L5_212" if method == "sws" else "aux_test")
    namespace = argparse.Namespace(
        model=model, input_size=IMG, nb_classes=CLASSES, epochs=150, lr=5e-4, teacher_model="levit_384",
        distillation_type="soft", distillation_alpha=1.0, distillation_tau=1.0, data_set="IMNET", seed=0,
        output_dir="out", resume="", smoothing=0.1, repeated_aug=True, num_heads=HEADS,
    )  # fmt: skip
    for k, v in args.items():
        setattr(namespace, k, v)
    if "num_heads" in args and args["num_heads"] is None:
        del namespace.num_heads
    state = official_state(method)
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "weight_decay": 0.05, "params": [0, 1]}]},
            "lr_scheduler": {"t_initial": 150, "warmup_t": 5, "noise_range_t": None},
            "epoch": 149,
            "model_ema": official_state(method, seed=7),
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 12},
            "args": namespace,
        },
        path,
    )
    return state


def official_expansion(method, state, depth, stage_map=None):
    """The official gene_tranfer (TLEG) / gene_tranfer_1 (SWS), written from their formulas, with the final norm
    kept before pooling (lgtool's `norm`, where the official Des-Nets use `fc_norm`)."""
    out = {k: state[k] for k in ("pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias")}
    out["norm.weight"], out["norm.bias"] = state["norm.weight"], state["norm.bias"]
    for i in range(depth):
        for module in MODULES:
            for part in ("weight", "bias"):
                if method == "sws":
                    value = state[f"blocks.block.{module}.instances.{stage_map[i]}.{part}"]
                else:
                    key = f"blocks.block.{module}.instances.0.{part}"
                    value = i / depth * state[f"{key}_ilayer"] + state[f"{key}_base"]
                out[f"blocks.{i}.{module}.{part}"] = value
    return out


def even_split(depth, stages=SWS_STAGES):
    """SWS's stage of each layer: the Aux-Net's own stages at its depth, else an even split, remainder first."""
    if depth == sum(stages):
        sizes = stages
    else:
        base, extra = divmod(depth, len(stages))
        sizes = [base + (s < extra) for s in range(len(stages))]
    return [s for s, n in enumerate(sizes) for _ in range(n)]


def _one_line_error(code, out, err, expected_code, tmp_path, *keep):
    assert code == expected_code, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@pytest.fixture(params=["sws", "tleg"])
def official(request, tmp_path):
    path = tmp_path / "checkpoint.pth"
    state = official_checkpoint(request.param, path)
    return request.param, path, state


def test_convert_then_expand_is_the_official_formula_at_several_depths(official, run_cli, tmp_path):
    method, path, state = official
    gene = tmp_path / "gene.safetensors"
    code, out, err = run_cli("convert", path, "-o", gene, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["method"] == method and info["weights"] == "model" and info["epoch"] == 149
    aux_depth = sum(SWS_STAGES) if method == "sws" else 12  # TLEG: the official Aux depth
    assert (info["width"], info["num_heads"], info["aux_depth"], info["num_classes"]) == (D, HEADS, aux_depth, 10)
    for depth in (3, 5, 8, 12):
        folder = tmp_path / f"d{depth}"
        code, _, err = run_cli("expand", gene, "--depth", depth, "-o", folder)
        assert code == 0, err
        got = load_file(folder / "model.safetensors")
        want = official_expansion(method, state, depth, even_split(depth) if method == "sws" else None)
        want.update({"head.weight": state["head.weight"], "head.bias": state["head.bias"]})  # same class count
        assert got.keys() == want.keys()
        for key, t in want.items():
            assert torch.equal(got[key], t), (depth, key)
    # another class count: the head is timm's fresh one, the rest unchanged
    code, _, err = run_cli("expand", gene, "--depth", 5, "--num-classes", 3, "-o", tmp_path / "c3")
    assert code == 0, err
    got = load_file(tmp_path / "c3" / "model.safetensors")
    assert got["head.weight"].shape == (3, D) and torch.equal(got["norm.weight"], state["norm.weight"])
    model = import_timm().create_model(f"local-dir:{(tmp_path / 'd8').resolve()}", pretrained=True).eval()
    assert model(torch.randn(2, C, IMG, IMG)).isfinite().all()


def _official_forward(method, state, x, heads, depth, stages=SWS_STAGES, eps=OFFICIAL_EPS):
    """The official Aux-Net's function, from its forward code: pre-norm blocks, the final norm per token,
    mean pooling, the head; every LayerNorm with the official eps."""
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2) + state["pos_embed"]
    stage = [s for s, n in enumerate(stages) for _ in range(n)]
    for i in range(depth):

        def w(module, part, i=i):
            if method == "sws":
                return state[f"blocks.block.{module}.instances.{stage[i]}.{part}"]
            key = f"blocks.block.{module}.instances.0.{part}"
            return state[f"{key}_base"] + i / depth * state[f"{key}_ilayer"]

        b, n, d = t.shape
        h = F.layer_norm(t, (d,), w("norm1", "weight"), w("norm1", "bias"), eps)
        q, k, v = F.linear(h, w("attn.qkv", "weight"), w("attn.qkv", "bias")).reshape(b, n, 3, heads, -1).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        a = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        t = t + F.linear(a.transpose(1, 2).reshape(b, n, d), w("attn.proj", "weight"), w("attn.proj", "bias"))
        h = F.layer_norm(t, (d,), w("norm2", "weight"), w("norm2", "bias"), eps)
        h = F.linear(F.gelu(F.linear(h, w("mlp.fc1", "weight"), w("mlp.fc1", "bias"))), *_fc2(w))
        t = t + h
    t = F.layer_norm(t, (t.shape[-1],), state["norm.weight"], state["norm.bias"], eps).mean(1)
    return F.linear(t, state["head.weight"], state["head.bias"])


def _fc2(w):
    return w("mlp.fc2", "weight"), w("mlp.fc2", "bias")


def test_the_converted_aux_net_computes_the_official_function_up_to_eps(official, run_cli, tmp_path):
    method, path, state = official
    assert run_cli("convert", path, "-o", tmp_path / "g.safetensors")[0] == 0
    gene = lgtool.load_learngene(tmp_path / "g.safetensors")
    aux = build_aux(gene).eval()
    x = torch.randn(3, C, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = aux(x)
        for m in aux.vit.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.eps = OFFICIAL_EPS
        torch.testing.assert_close(aux(x), _official_forward(method, state, x, HEADS, gene.arch.depth))
        eps_diff = (aux(x) - ours).abs().max().item()
    assert eps_diff > 0  # the one difference lgtool cannot represent, and it is recorded as measured
    recorded = gene.meta.provenance["norm_eps"]
    assert recorded["source"] == 1e-5 and recorded["lgtool"] == 1e-6
    assert recorded["max_abs_logit_diff"] == pytest.approx(eps_diff, rel=0.5)

    # expand --check at the Aux depth compares with the converted Aux-Net
    code, out, err = run_cli("expand", tmp_path / "g.safetensors", "--check", "-o", tmp_path / "aux", "--json")
    check = json.loads(out)["check"]
    assert code == 0 and check["passed"] and check["max_abs_diff_aux"] <= 1e-5, err


def test_provenance_and_inspect_name_the_source_and_the_eps(official, run_cli, tmp_path):
    method, path, _ = official
    gene = tmp_path / "g.safetensors"
    assert run_cli("convert", path, "-o", gene)[0] == 0
    code, out, _ = run_cli("inspect", gene, "--json")
    prov = json.loads(out)["provenance"]
    assert code == 0
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["repository"] == {"sws": "eddiexia98/SWS", "tleg": "Robbo4729/MaskLG"}[method]
    assert prov["method"] == method and prov["converted_from"] == "checkpoint.pth" and prov["epoch"] == 149
    assert prov["args"]["teacher_model"] == "levit_384" and "output_dir" not in prov["args"]
    code, out, _ = run_cli("inspect", gene)
    assert "differences from the source: LayerNorm eps 1e-5 in the official Aux-Net, 1e-6" in out
    assert "provenance: " in out and "differences=" not in out


def test_ema_and_plain_state_dicts(official, run_cli, tmp_path):
    method, path, state = official
    ckpt = torch.load(path, weights_only=False)  # our own file
    ema = tmp_path / "ema.safetensors"
    assert run_cli("convert", path, "--ema", "-o", ema)[0] == 0
    assert lgtool.load_learngene(ema).meta.provenance["weights"] == "model_ema"
    ema_state = ckpt["model_ema"]
    assert torch.equal(lgtool.load_learngene(ema).tensors["pos_embed"], ema_state["pos_embed"])

    reference = tmp_path / "ref.safetensors"
    assert run_cli("convert", path, "-o", reference)[0] == 0
    torch.save(state, tmp_path / "plain.pth")
    save_file(state, str(tmp_path / "plain.safetensors"))
    for plain in ("plain.pth", "plain.safetensors"):
        out_file = tmp_path / f"{plain}.gene.safetensors"
        stages = ["--stages", "2,1,2"] if method == "sws" else []  # a state dict does not say them
        code, _, err = run_cli("convert", tmp_path / plain, "--num-heads", HEADS, *stages, "-o", out_file)
        assert code == 0, err
        a, b = lgtool.load_learngene(out_file), lgtool.load_learngene(reference)
        assert a.tensors.keys() == b.tensors.keys()
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
        assert a.meta.provenance["weights"] == "state dict"


def test_official_model_names_give_heads_stages_and_depth(run_cli, tmp_path):
    """SWS's official Aux-Nets run 12 heads, stages from the name (`_L5_212`); TLEG's run DeiT's heads, depth 12
    unless the name says `_L<n>`. Width 192 so the names (deit_tiny) agree with the tensors."""
    state = official_state("sws", d=192)
    torch.save({"model": state, "args": argparse.Namespace(model="aux_deit_tiny_patch7_28_L5_212")}, tmp_path / "s")
    code, out, err = run_cli("convert", tmp_path / "s", "-o", tmp_path / "s.safetensors", "--json")
    info = json.loads(out)
    assert code == 0, err
    assert (info["num_heads"], info["aux_depth"], info["rule"]["stage_sizes"]) == (12, 5, [2, 1, 2])
    assert any("expand --num-heads 3" in note for note in info["differences"])  # the official Des-Ti's count

    state = official_state("tleg", d=192)
    for name, depth in (("aux_deit_tiny_patch7_28", 12), ("aux_deit_tiny_patch7_28_L6", 6)):
        torch.save({"model": state, "args": argparse.Namespace(model=name, nb_classes=10)}, tmp_path / "t")
        code, out, err = run_cli("convert", tmp_path / "t", "-o", tmp_path / f"{name}.safetensors", "--json")
        assert code == 0, err
        assert (json.loads(out)["num_heads"], json.loads(out)["aux_depth"]) == (3, depth)


class Payload:
    """A pickle that would create a folder if it were ever unpickled in full."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickled_object_other_than_namespace_is_refused_and_never_runs(run_cli, tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": official_state("sws"), "args": Payload(marker)}, tmp_path / "evil.pth")
    code, out, err = run_cli("convert", tmp_path / "evil.pth", "-o", tmp_path / "g.safetensors")
    _one_line_error(code, out, err, 3, tmp_path, "evil.pth")
    assert "refused" in err and "posix.mkdir" in err and "nothing in the file ran" in err
    assert not marker.exists()


def _bad_inputs(tmp_path):
    ok = tmp_path / "checkpoint.pth"
    official_checkpoint("sws", ok)
    data = ok.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x02not a checkpoint" * 10)
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({f"blocks.0.{m}.weight": torch.zeros(2) for m in MODULES}, tmp_path / "vit.pth")
    torch.save({"net": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "other.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    cls = official_state("tleg")
    cls["cls_token"] = torch.zeros(1, 1, D)
    torch.save(cls, tmp_path / "cls.pth")
    nan = official_state("tleg")
    nan["blocks.block.mlp.fc1.instances.0.weight_ilayer"][0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pth")
    official_checkpoint("tleg", tmp_path / "classes.pth", nb_classes=100)
    official_checkpoint("sws", tmp_path / "noheads.pth", num_heads=None)
    return ok


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["missing.pth"], 3, "no such file"),
        (["truncated.pth"], 3, "not a readable PyTorch checkpoint"),
        (["garbage.pth"], 3, "not a readable PyTorch checkpoint"),
        (["empty.pth"], 3, "not a readable PyTorch checkpoint"),
        (["vit.pth"], 3, "per-layer timm ViT weights"),
        (["other.pth"], 3, "a dict with keys net, epoch"),
        (["tensor.pth"], 3, "holds a Tensor"),
        (["cls.pth", "--num-heads", "4"], 3, "holds no cls_token"),
        (["nan.pth", "--num-heads", "4"], 3, "mlp.fc1.instances.0.weight_ilayer holds NaN"),
        (["classes.pth"], 3, "num_classes 10 but the checkpoint's args say 100"),
        (["checkpoint.pth", "--method", "tleg"], 3, "--method tleg, but its blocks are in the official SWS layout"),
        (["checkpoint.pth", "--method", "wave"], 2, "no official WAVE code"),
        (["checkpoint.pth", "--method", "nope"], 2, "unknown method"),
        (["checkpoint.pth", "--num-heads", "8"], 2, "ran 4 heads"),
        (["checkpoint.pth", "--stages", "2,3"], 2, "the checkpoint holds 3 stages"),
        (["noheads.pth"], 2, "give --num-heads"),
        (["checkpoint.pth", "--ema", "--stages", "1,1"], 2, "holds 3 stages"),
        (["checkpoint.pth", "--stages", "2,0,3"], 2, "--stages: stage_sizes: stage sizes must be positive"),
    ],
)
def test_bad_inputs_get_one_line_and_nothing_is_written(run_cli, tmp_path, args, code, message):
    _bad_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    got, out, err = run_cli("convert", tmp_path / args[0], *args[1:], "-o", tmp_path / "gene.safetensors")
    _one_line_error(got, out, err, code, tmp_path, *before)
    assert message in err, err


def test_ema_needs_a_checkpoint_with_one(run_cli, tmp_path):
    torch.save(official_state("sws"), tmp_path / "plain.pth")
    code, out, err = run_cli("convert", tmp_path / "plain.pth", "--ema", "--num-heads", 4, "-o", tmp_path / "g")
    _one_line_error(code, out, err, 3, tmp_path, "plain.pth")
    assert "--ema needs a training checkpoint" in err


def test_an_existing_output_is_refused_before_the_checkpoint_is_read(run_cli, tmp_path, monkeypatch):
    import lgtool.convert

    official_checkpoint("tleg", tmp_path / "c.pth")
    (tmp_path / "g.safetensors").write_text("keep")
    monkeypatch.setattr(lgtool.convert, "load_checkpoint", lambda *_: pytest.fail("read before the output check"))
    code, out, err = run_cli("convert", tmp_path / "c.pth", "-o", tmp_path / "g.safetensors")
    assert code == 3 and "already exists" in err and (tmp_path / "g.safetensors").read_text() == "keep"
