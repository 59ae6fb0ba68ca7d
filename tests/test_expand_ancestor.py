"""`lgtool expand --ancestor`: weight selection as a route a user takes, checked against the paper's definition
(written here from the paper, not from lgtool's code), against the bench's own weight-selection rows, and for its
refusals, `--check`, `--dry-run` and `inspect`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from test_bad_input import refused, snapshot

import lgtool
from lgtool.base.arch import Arch
from lgtool.bench.rows import Bench
from lgtool.bench.settings import BenchConfig
from lgtool.training.ancestor import load_ancestor

SHIPPED = Path(lgtool.__file__).parent / "ancestors" / "fmnist-vit128"  # `fmnist-vit`: depth 8, width 128, 2 heads
ANCESTOR_DEPTH, ANCESTOR_WIDTH = 8, 128


# --- weight selection as Xu et al. (ICLR 2024, "Initializing Models with Larger Ones") define it ---


def evenly(n: int, m: int) -> list[int]:
    """m of n indices, evenly spaced: stride k when n = k * m, else rounded linspace over the whole range."""
    if n % m == 0:
        return list(range(0, n, n // m))
    return [round(i * (n - 1) / (m - 1)) for i in range(m)]


def reference_layers(policy: str, n: int, m: int) -> list[int]:
    """The ancestor block of each of m layers: the paper's first m, or evenly spaced ones (which past the
    ancestor's depth repeat blocks evenly, whatever the policy)."""
    return list(range(m)) if policy == "first" and m <= n else evenly(n, m)


def small_dim(n: int, width: int) -> int:
    """A dimension of the ancestor at the Desc-Net's width: the width, 3x it (qkv) and 4x it (MLP) scale."""
    return n * width // ANCESTOR_WIDTH if n in (ANCESTOR_WIDTH, 3 * ANCESTOR_WIDTH, 4 * ANCESTOR_WIDTH) else n


def reference(width: int, depth: int, policy: str, keep_head: bool = True) -> dict:
    """The Desc-Net weight selection makes from the shipped ancestor's model.safetensors, read directly."""
    big = load_file(str(SHIPPED / "model.safetensors"))
    layers = reference_layers(policy, ANCESTOR_DEPTH, depth)
    out = {}
    for key, t in big.items():
        if key.startswith("head.") and not keep_head:
            continue
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            if int(index) != 0:
                continue
            for layer, block in enumerate(layers):
                out[f"blocks.{layer}.{rest}"] = _cut(big[f"blocks.{block}.{rest}"], width)
        else:
            out[key] = _cut(t, width)
    return out


def _cut(t: torch.Tensor, width: int) -> torch.Tensor:
    for dim, n in enumerate(t.shape):
        t = t.index_select(dim, torch.tensor(evenly(n, small_dim(n, width))))
    return t


def test_the_reference_is_the_papers_rule():
    assert evenly(128, 64) == list(range(0, 128, 2)) and evenly(8, 3) == [0, 4, 7]
    assert reference_layers("first", 8, 4) == [0, 1, 2, 3]
    # evenly spaced blocks: a stride where the depth divides the ancestor's (as the bench's rows took them)
    assert reference_layers("spaced", 8, 4) == [0, 2, 4, 6]
    assert reference_layers("first", 8, 12) == [0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7]  # repeated past the depth


def _expand(run_cli, *args) -> dict:
    code, stdout, err = run_cli("expand", "--ancestor", "fmnist-vit", *args, "--json")
    assert code == 0, err
    return json.loads(stdout)


@pytest.mark.parametrize("depth", [4, 8, 12])
@pytest.mark.parametrize("policy", ["first", "spaced"])
def test_expand_ancestor_is_weight_selection_tensor_for_tensor(run_cli, tmp_path, depth, policy):
    out = tmp_path / "d"
    r = _expand(run_cli, "--depth", depth, "--width", 64, "--layers", policy, "-o", out)
    assert r["layers"] == reference_layers(policy, ANCESTOR_DEPTH, depth) and r["layer_policy"] == policy
    got, want = load_file(str(out / "model.safetensors")), reference(64, depth, policy)
    assert list(got) != [] and set(got) == set(want)  # exactly timm's keys: nothing more, nothing less
    assert all(torch.equal(got[k], want[k]) for k in want)
    config = json.loads((out / "config.json").read_text())
    assert config["model_args"]["num_heads"] == 2 and config["pretrained_cfg"]["mean"] == [0.286]


def test_a_width_that_does_not_divide_the_ancestors_takes_rounded_linspace_indices(run_cli, tmp_path):
    _expand(run_cli, "--depth", 3, "--width", 48, "-o", tmp_path / "d")
    got, want = load_file(str(tmp_path / "d" / "model.safetensors")), reference(48, 3, "spaced")
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_the_default_is_spaced_and_said_in_help(run_cli, tmp_path, monkeypatch):
    assert _expand(run_cli, "--depth", 4, "-o", tmp_path / "d")["layers"] == [0, 2, 4, 6]
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: the sentence unbroken by the help's frame
    code, stdout, _ = run_cli("expand", "--help")
    assert code == 0 and "default spaced: the bench's full fmnist-vit run chose it in 27 of its 30" in stdout


@pytest.mark.parametrize("depth, policy, classes", [(4, "first", 10), (12, "spaced", 5)])
def test_the_benchs_weight_selection_rows_start_from_what_the_command_writes(run_cli, tmp_path, depth, policy, classes):
    out = tmp_path / "d"
    _expand(run_cli, "--depth", depth, "--width", 64, "--layers", policy, "--num-classes", classes, "-o", out)
    # the Bench's family architecture as `lgtool.bench.run.load` builds it for --width 64 on 28 px gray images
    arch = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=64, num_heads=2, depth=3, num_classes=classes)
    teacher = load_ancestor("fmnist-vit", num_classes=10)
    bench = Bench(BenchConfig(), 0, arch, None, None, teacher, True, print)  # seed 0: the family's, by default
    model, _, done = bench.initial_model("weight-selection", depth, 64, {}, policy)
    written = load_file(str(out / "model.safetensors"))
    start = model.state_dict()
    assert set(start) == set(written) and all(torch.equal(start[k], written[k]) for k in start)
    assert done["head"] == ("selected" if classes == 10 else "fresh")  # a fresh head too: the same seed


def test_another_label_count_gets_a_fresh_head_and_everything_else_selected(run_cli, tmp_path):
    r = _expand(run_cli, "--depth", 4, "--width", 64, "--num-classes", 5, "-o", tmp_path / "d")
    got, want = load_file(str(tmp_path / "d" / "model.safetensors")), reference(64, 4, "spaced", keep_head=False)
    assert got["head.weight"].shape == (5, 64) and got["head.bias"].shape == (5,)
    assert set(got) - set(want) == {"head.weight", "head.bias"} and all(torch.equal(got[k], want[k]) for k in want)
    assert r["head"].startswith("fresh") and r["num_classes"] == 5


def test_check_passes_and_plain_timm_loads_the_folder(run_cli, tmp_path):
    out = tmp_path / "d"
    r = _expand(run_cli, "--depth", 5, "--width", 32, "--check", "-o", out)
    assert r["check"]["passed"] is True and r["check"]["max_abs_diff_timm"] == 0.0
    model = timm.create_model(f"local-dir:{out.resolve()}", pretrained=True)
    written = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(v, written[k]) for k, v in model.state_dict().items())


def test_a_failed_check_exits_4_and_writes_nothing(run_cli, tmp_path, monkeypatch):
    import lgtool.training.descnet

    monkeypatch.setattr(lgtool.training.descnet, "check_descnet", lambda *a, **k: {"max_abs_diff_timm": 1.0})
    refused(run_cli, tmp_path, "expand", "--ancestor", "fmnist-vit", "--depth", 3, "--check", "-o", tmp_path / "d",
            code=4, says="--check failed")  # fmt: skip


DRY = [pytest.param((), id="run"), pytest.param(("--dry-run",), id="dry-run")]


@pytest.mark.parametrize("dry", DRY)
@pytest.mark.parametrize(
    "args, code, says",
    [
        (["--ancestor", "fmnist-cnn"], 3, "not a ViT: weight selection cuts a ViT's tensors from a ViT's; learn a "
         "learngene from it instead (lgtool learn --ancestor fmnist-cnn ...)"),
        (["--ancestor", "fmnist-vit", "--width", "256"], 3, "lgtool learn --ancestor fmnist-vit --width 256"),
        (["--ancestor", "fmnist-vit", "--width", "small"], 3, "wider than --ancestor fmnist-vit (128)"),
        (["--ancestor", "fmnist-vit", "--width", "64", "--num-heads", "3"], 2, "not divisible by 3 heads"),
        (["--ancestor", "no-such-model"], 3, "not a timm model name"),
        (["--ancestor", "fmnist-vit", "--layer-map", "0,1"], 2, "--layer-map is a learngene's setting"),
        (["--ancestor", "fmnist-vit", "--calibrate", "fashion-mnist"], 2, "--calibrate is a learngene's setting"),
        (["--ancestor", "fmnist-vit", "--calibrate-steps", "5"], 2, "--calibrate-steps is a learngene's setting"),
        (["--ancestor", "fmnist-vit", "--img-size", "56"], 2, "--img-size is a learngene's setting"),
        (["--ancestor", "fmnist-vit", "--layers", "middle"], 2, "--layers must be one of first, spaced"),
        (["--layers", "first"], 2, "--layers chooses the ancestor blocks of weight selection and needs --ancestor"),
        (["GENE", "--ancestor", "fmnist-vit"], 2, "expand one or the other"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_with_the_runs_exit_code_dry_or_not(run_cli, tmp_path, args, code, says, dry):
    gene = tmp_path / "g.safetensors"
    gene.write_bytes(b"not read: the mix is refused first")
    args = [gene if a == "GENE" else a for a in args]
    refused(run_cli, tmp_path, "expand", *args, "--depth", 4, *dry, "-o", tmp_path / "out", code=code, says=says)


@pytest.mark.parametrize("dry", DRY)
def test_an_existing_output_is_refused_dry_or_not(run_cli, tmp_path, dry):
    (tmp_path / "out").mkdir()
    refused(run_cli, tmp_path, "expand", "--ancestor", "fmnist-vit", *dry, "-o", tmp_path / "out", code=3,
            says="already exists")  # fmt: skip


def _no_weights_read(monkeypatch):
    """Make every way to read the ancestor's or a learngene's tensors fail the test."""
    import safetensors.torch

    import lgtool.training.ancestor
    import lgtool.training.descnet

    def forbidden(*a, **k):
        raise AssertionError("a dry run read tensors")

    for module, name in [
        (lgtool.training.ancestor, "load_ancestor"),
        (lgtool.training.ancestor, "load_file"),
        (lgtool.training.descnet, "read_learngene"),
        (safetensors.torch, "load_file"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(module, name, forbidden)


def test_dry_run_of_weight_selection_reads_no_weights_and_writes_nothing(run_cli, tmp_path, monkeypatch):
    _no_weights_read(monkeypatch)
    before = snapshot(tmp_path)
    code, stdout, err = run_cli("expand", "--ancestor", "fmnist-vit", "--depth", 12, "--width", 64, "--dry-run",
                                "--json", "-o", tmp_path / "d")  # fmt: skip
    assert code == 0, err
    plan = json.loads(stdout)
    assert plan["dry_run"] is True and plan["route"] == "weight-selection" and plan["output"] == str(tmp_path / "d")
    assert plan["layers"] == reference_layers("spaced", 8, 12) and plan["head"] == "kept" and plan["params"] > 0
    assert snapshot(tmp_path) == before
    code, stdout, err = run_cli("expand", "--ancestor", "fmnist-vit", "--dry-run", "-o", tmp_path / "d")
    assert code == 0 and len(stdout.strip().splitlines()) == 1
    assert stdout.startswith(f"dry run: would write {tmp_path / 'd'}/") and "nothing written" in stdout


def test_dry_run_of_a_learngene_reads_its_header_only_and_writes_nothing(run_cli, tmp_path, monkeypatch):
    from conftest import tiny_gene

    gene = tmp_path / "g.safetensors"
    tiny_gene("sws").save(gene)
    _no_weights_read(monkeypatch)
    before = snapshot(tmp_path)
    code, stdout, err = run_cli("expand", gene, "--depth", 5, "--dry-run", "--json", "-o", tmp_path / "d")
    assert code == 0, err
    plan = json.loads(stdout)
    assert plan["route"] == "learngene" and plan["method"] == "sws" and plan["depth"] == 5
    assert snapshot(tmp_path) == before
    refused(run_cli, tmp_path, "expand", gene, "--depth", 2, "--dry-run", "-o", tmp_path / "d", code=3,
            says="smaller than the 3 SWS stages")  # fmt: skip


def test_inspect_shows_the_weight_selection_lineage(run_cli, tmp_path):
    out = tmp_path / "d"
    _expand(run_cli, "--depth", 3, "--width", 64, "--layers", "first", "-o", out)
    digest = __import__("hashlib").sha256((SHIPPED / "model.safetensors").read_bytes()).hexdigest()
    code, stdout, err = run_cli("inspect", out, "--json")
    lg = json.loads(stdout)["lgtool"]
    assert code == 0 and lg["route"] == "weight-selection" and lg["ancestor"] == "fmnist-vit"
    assert lg["ancestor_sha256"] == digest and lg["layers"] == [0, 1, 2] and lg["layer_policy"] == "first"
    assert lg["width_source"] == "evenly spaced selection from width 128" and lg["head"].startswith("kept")
    # the text, torch-free, as any inspect
    code = (
        "import sys; from lgtool.cli import main; sys.argv=['lgtool','inspect',sys.argv[1]];\n"
        "try: main()\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'inspect imported torch'"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"weight selection of ancestor fmnist-vit (sha256 {digest[:12]}" in text
    assert "layers (ancestor blocks, first): [0, 1, 2]" in text
    assert "evenly spaced selection from width 128" in text and "head kept from the ancestor" in text
    card = (out / "README.md").read_text()
    assert "weight selection from `fmnist-vit`" in card and f"sha256 `{digest[:16]}" in card and "| 2 | 2 |" in card


@pytest.fixture
def timm_ancestor(monkeypatch):
    """timm names as ancestors with no network: `test_vit` (timm's tiny class-token ViT: width 64, depth 6, token
    pooling, MLP ratio 3) loads as a seeded random model, as pretrained weights from nowhere in the hub cache."""
    import lgtool.training.ancestor

    monkeypatch.setattr(lgtool.training.ancestor, "offline", lambda: False)  # skips only the cache check
    monkeypatch.setattr(lgtool.training.ancestor, "check_reachable", lambda *a, **k: None)  # and the hub probe
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False).eval()
    monkeypatch.setattr(lgtool.training.ancestor, "load_ancestor", lambda name, *a, **k: model)
    return model


def test_a_timm_name_keeps_its_own_vit_kind_and_says_why_its_weights_are_not_hashed(run_cli, tmp_path, timm_ancestor):
    out = tmp_path / "d"
    code, stdout, err = run_cli("expand", "--ancestor", "test_vit", "--depth", 3, "--width", 32, "--check", "--json",
                                "-o", out)  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["check"]["passed"] is True
    config = json.loads((out / "config.json").read_text())
    args, lg = config["model_args"], config["lgtool"]
    assert (args["class_token"], args["global_pool"], args["mlp_ratio"], args["img_size"]) == (True, "token", 3.0, 160)
    assert (args["embed_dim"], args["num_heads"], args["depth"], args["num_classes"]) == (32, 2, 3, 1000)
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    assert lg["ancestor_sha256"] is None and "no Hugging Face hub cache file" in lg["ancestor_sha256_missing"]
    written, big = load_file(str(out / "model.safetensors")), timm_ancestor.state_dict()
    assert torch.equal(written["cls_token"], big["cls_token"][..., ::2])  # 64 -> 32: every other channel
    assert torch.equal(written["blocks.2.mlp.fc1.weight"], big["blocks.4.mlp.fc1.weight"][::2, ::2])  # spaced: 0, 2, 4
    assert "sha256 unknown: timm's pretrained weights" in (out / "README.md").read_text()
    code, stdout, _ = run_cli("inspect", out)
    assert code == 0 and "sha256 unknown" in stdout and "not hashed" in stdout


def test_a_vit_lgtool_does_not_describe_is_refused_before_any_weight_is_read(run_cli, tmp_path, timm_ancestor):
    refused(run_cli, tmp_path, "expand", "--ancestor", "test_vit2", "--depth", 3, "-o", tmp_path / "d", code=3,
            says="is a ViT of a kind lgtool's Desc-Nets do not describe (it has reg_token)")  # fmt: skip
