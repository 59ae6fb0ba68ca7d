"""The family a bench hands over: the selection rule on hand-made rows, and a tiny real bench whose family rebuilds
from its own recipe.sh."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion_mnist
from safetensors.torch import load_file

from lgtool.bench.handover import candidates, choose, family_entries, learn_shares

ROOT = Path(__file__).resolve().parent.parent
FLOPS = {"d2-w64": 10, "d4-w64": 20, "teacher": 100}


def row(init, depth, epochs, val, test, **extra):
    return {"depth": depth, "width": 64, "init": init, "epochs": epochs, "val_top1": val, "top1": test,
            "params": 1000 * depth, "train_images": 100 * epochs, "teacher_images": 0, **extra}  # fmt: skip


def pick(rows, shares=None):
    return choose([e for r in rows for e in candidates(r, shares or {}, FLOPS)])


def test_validation_decides_and_the_test_split_never_does():
    chosen = pick([row("scratch", 2, 4, 0.80, 0.60), row("weight-selection", 2, 1, 0.79, 0.95)])
    assert chosen["route"] == "scratch@4"  # the higher validation top-1, whatever the test split says


def test_equal_validation_goes_to_the_cheaper_route_with_the_learning_shared():
    ws = row("weight-selection", 2, 2, 0.80, 0.80)  # 3 x 200 images x 10 FLOPs = 6,000
    gene = row("sws", 2, 1, 0.80, 0.80)  # 3 x 100 x 10 = 3,000, plus its share of the learning
    assert pick([gene, ws], {"sws": 2_000})["route"] == "sws@1"
    assert pick([gene, ws], {"sws": 4_000})["route"] == "weight-selection@2"
    assert pick([ws, gene], {"sws": 4_000})["training_flops"] == 6_000  # the order rows come in does not matter
    shares = learn_shares({"sws": {"x": 1}, "tleg": {"x": None}}, {"sws": [(2, 64), (4, 64)]}, lambda i: i["x"] and 8)
    assert shares == {"sws": 4.0}  # learned once, shared by the two sizes it makes; unknown cost: no share


def test_a_learngene_as_expanded_is_a_candidate_and_wins_a_tie():
    gene = row("tleg", 2, 1, 0.81, 0.82, val_at_init=0.81, top1_at_init=0.79, lr=1e-3, warmup_epochs=0.2)
    chosen = pick([gene, row("weight-selection", 2, 1, 0.80, 0.90)])
    assert chosen["route"] == "tleg@0" and chosen["top1"] == 0.79 and chosen["training_flops"] == 0
    assert "lr" not in chosen  # nothing was trained at 0 epochs: no rate to repeat
    alternative = row("weight-selection", 2, 1, 0.70, 0.70, val_at_init=0.99, top1_at_init=0.99)
    assert pick([alternative])["route"] == "weight-selection@1"  # an alternative's uncut start is never offered


def test_family_json_names_what_was_kept_and_what_was_not():
    rows = [row("scratch", 2, 1, 0.7, 0.7), row("scratch", 2, 2, 0.8, 0.8), row("scratch", 4, 1, 0.6, 0.6),
            {"depth": 4, "width": 64, "init": "sws", "epochs": 1, "skipped": "no"}]  # fmt: skip
    kept = {"d2-w64": candidates(rows[0], {}, FLOPS)[0]}  # the 2-epoch row ran in a run that kept no models
    family = family_entries(rows, kept, {}, FLOPS, [(2, 64), (4, 64)])
    assert family["d2-w64"]["path"] == "d2-w64" and family["d2-w64"]["route"] == "scratch@1"
    assert "scratch@2 scored higher on validation" in family["d2-w64"]["note"]
    assert family["d4-w64"]["path"] is None and family["d4-w64"]["route"] == "scratch@1"


@pytest.fixture(scope="module")
def ws_bench(ancestor, tmp_path_factory):
    """A tiny bench of weight selection and scratch at depths 1 and 3: its family, made by weight selection."""
    from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench

    cfg = BenchConfig(depths=[1, 3], width=32, inits=["weight-selection", "scratch"], max_epochs=1, train_samples=704,
                      batch_size=64, lr_grid=[2e-3], aux_depth=3, seeds=[0])  # fmt: skip
    io = BenchIO(ancestor=str(ancestor), output=tmp_path_factory.mktemp("bench") / "b")
    return run_bench(plan_bench(cfg, io), log=lambda m: None), io


def recipe_blocks(path):
    """recipe.sh as (prelude, {block title: its command lines})."""
    prelude, blocks, title = [], {}, None
    for line in path.read_text().splitlines():
        if line.startswith("# --- "):
            title = line.removeprefix("# --- ").split(":")[0]
            blocks[title] = []
        elif title is None:
            prelude.append(line)
        elif line.startswith("$LGTOOL "):
            blocks[title].append(line)
    return "\n".join(prelude), blocks


def bash(script, env, cwd):
    lgtool = f"{sys.executable} -m lgtool"
    env = {**os.environ, "LGTOOL": lgtool, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(["bash", "-e", "-c", script], env=env, cwd=cwd, capture_output=True, text=True)


@needs_fashion_mnist
def test_the_family_is_the_best_on_validation_and_loads_with_plain_timm(ws_bench):
    report, io = ws_bench
    folder = io.output / "family"
    family = json.loads((folder / "family.json").read_text())
    assert set(family) == {"d1-w32", "d3-w32"}
    for size, e in family.items():
        here = [r for r in report["rows"] if f"d{r['depth']}-w{r['width']}" == size]
        assert e["val_top1"] == max(r["val_top1"] for r in here) and e["path"] == size
        assert e["route"].startswith("weight-selection@")  # a trained ancestor's cut beats timm's init
        assert {"lr", "warmup_epochs", "layer_policy", "params", "forward_flops", "training_flops"} <= set(e)
        config = json.loads((folder / size / "config.json").read_text())
        assert config["lgtool"]["family"] == {k: v for k, v in e.items() if k != "path"}
    script = ROOT / "examples" / "check_family.py"
    checked = subprocess.run([sys.executable, script, folder], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # plain timm, no lgtool, full test split
    card = (folder / "README.md").read_text()
    assert all(f"[{size}]({size}/)" in card for size in family)
    assert (folder / "family.png").read_bytes()[:4] == b"\x89PNG"


@needs_fashion_mnist
def test_the_recipe_rebuilds_a_weight_selection_size_exactly(ws_bench, tmp_path):
    _, io = ws_bench
    recipe = io.output / "family" / "recipe.sh"
    assert subprocess.run(["bash", "-n", str(recipe)]).returncode == 0
    prelude, blocks = recipe_blocks(recipe)
    first = [lines[0] for lines in blocks.values()]  # each route's first command reads nothing a recipe writes
    assert first and all("expand --ancestor" in line for line in first)
    for line in first:
        dry = bash(prelude + "\n" + line + " --dry-run", {"OUT": str(tmp_path / "dry")}, tmp_path)
        assert dry.returncode == 0, dry.stderr
    assert os.listdir(tmp_path / "dry") == []  # the prelude made $OUT; the dry runs wrote nothing in it
    size = "d3-w32"
    done = bash(prelude + "\n" + "\n".join(blocks[size]), {"OUT": str(tmp_path / "out")}, tmp_path)
    assert done.returncode == 0, done.stderr
    rebuilt = load_file(str(tmp_path / "out" / size / "last" / "model.safetensors"))
    benched = load_file(str(io.output / "family" / size / "model.safetensors"))
    assert rebuilt.keys() == benched.keys()
    assert all(torch.equal(rebuilt[k], benched[k]) for k in benched)  # same start, data, rate and seed


@needs_fashion_mnist
def test_no_family_keeps_no_model_but_still_writes_the_recipe(ws_bench, tmp_path):
    from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench

    report, io = ws_bench
    out = tmp_path / "b"
    shutil.copytree(io.output, out, ignore=shutil.ignore_patterns("family"))
    cfg = BenchConfig(**report["config"])
    lines = []
    run_bench(plan_bench(cfg, BenchIO(ancestor=io.ancestor, output=out, resume=True, no_family=True)), lines.append)
    assert not any("] d" in line and " test " in line for line in lines)  # every row was done: none trained again
    family = json.loads((out / "family" / "family.json").read_text())
    assert all(e["path"] is None for e in family.values()) and (out / "family" / "recipe.sh").is_file()
    assert sorted(p.name for p in (out / "family").iterdir()) == ["README.md", "family.json", "family.png", "recipe.sh"]


@needs_fashion_mnist
def test_the_first_command_of_every_route_in_a_recipe_passes_its_dry_run(tmp_path):
    """A recipe with every kind of route: learn (a learngene, as expanded and fine-tuned), expand --ancestor
    (weight selection, +KD) and finetune --init scratch (kd-scratch) each start a route and check dry."""
    from dataclasses import asdict

    from lgtool.base.arch import Arch
    from lgtool.bench.rebuild import recipe
    from lgtool.bench.settings import BenchConfig, BenchIO

    arch = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=64, num_heads=2, depth=8, num_classes=10)
    report = {"config": asdict(BenchConfig()), "arch": arch.model_dump(), "ancestor": {"name": "fmnist-vit"},
              "learngenes": {"sws": {"init": "ancestor"}, "wave": {"init": "ancestor"}}}  # fmt: skip
    routes = {"d6-w64": ("sws", 0), "d12-w64": ("wave", 1), "d2-w64": ("weight-selection+kd", 2),
              "d4-w64": ("kd-scratch", 1)}  # fmt: skip
    family = {}
    for size, (init, epochs) in routes.items():
        depth = int(size[1:].split("-")[0])
        family[size] = {"route": f"{init}@{epochs}", "init": init, "epochs": epochs, "depth": depth, "width": 64,
                        "val_top1": 0.8, "top1": 0.8, "lr": 2e-3, "warmup_epochs": 0.2, "layer_policy": "spaced",
                        "calibration_images": 100 if init == "wave" else 0}  # fmt: skip
    path = tmp_path / "recipe.sh"
    path.write_text(recipe(family, report, BenchIO(), {}))
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    prelude, blocks = recipe_blocks(path)
    learns = blocks.pop("learngenes")
    assert len(learns) == 2 and all(" learn " in line for line in learns)  # once per learngene used
    first = [*learns, *(lines[0] for lines in blocks.values() if ' expand "$OUT/' not in lines[0])]
    assert sum(" expand --ancestor " in line for line in first) == 1 and sum("--init scratch" in line for line in first)
    for line in first:
        dry = bash(prelude + "\n" + line + " --dry-run", {"OUT": str(tmp_path / "out")}, tmp_path)
        assert dry.returncode == 0, line + "\n" + dry.stderr
    assert os.listdir(tmp_path / "out") == []  # nothing written by any dry run
    assert '--ancestor "$ANCESTOR" --kd soft' in blocks["d2-w64"][1] and "--calibrate" in blocks["d12-w64"][0]
    assert len(blocks["d6-w64"]) == 1 and blocks["d6-w64"][0].endswith('-o "$OUT/d6-w64"')  # as expanded: no finetune
