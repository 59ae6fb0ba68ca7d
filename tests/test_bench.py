"""`lgtool finetune` resume and `lgtool bench` on a tiny real subset: files, consistency, skips, resume."""

import json
import os
import signal

import pytest
import torch
from conftest import needs_fashion_mnist
from safetensors.torch import load_file

from lgtool.bench import BenchConfig, run_bench
from lgtool.errors import UsageError
from lgtool.finetune import finetune
from lgtool.learngene import load_learngene
from lgtool.train import Interrupted, TrainConfig

pytestmark = needs_fashion_mnist


def test_finetune_resume_is_exact(ancestor, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=5e-4, kd="none", log_every=1)
    full = finetune(str(ancestor), "fashion-mnist", tmp_path / "full", train_samples=1280, cfg=cfg)

    def interrupt(**event):
        if event.get("step") == 27:  # in the second epoch, after the first best/ was written
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        finetune(str(ancestor), "fashion-mnist", tmp_path / "cut", train_samples=1280, cfg=cfg, log=interrupt)
    assert (tmp_path / "cut" / "best" / "model.safetensors").is_file() and not (tmp_path / "cut" / "last").exists()
    resumed = finetune(
        str(ancestor),
        "fashion-mnist",
        tmp_path / "cut",
        train_samples=1280,
        cfg=cfg,
        resume=tmp_path / "cut" / "checkpoint.ckpt",
    )
    assert resumed["steps"] == full["steps"] == 40
    a, b = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "cut" / "best" / "config.json").read_text())
    assert config["lgtool"]["init"] == "scratch" and config["lgtool"]["finetune"]["data"] == "fashion-mnist"


def test_bench_on_a_tiny_subset_writes_consistent_results(ancestor, tmp_path):
    cfg = BenchConfig(
        depths=[1, 3],
        width=32,
        epochs=1,
        learn_epochs=1,
        scratch_epochs=[1, 2],
        train_samples=640,
        batch_size=64,
        aux_depth=3,
        sws_stages=[1, 1, 1],
        wave_template_size=16,
    )
    lines = []
    report = run_bench(cfg, tmp_path / "b", ancestor=str(ancestor), log=lines.append)
    out = tmp_path / "b"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "accuracy_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["depth"], r["init"], r["epochs"]): r for r in report["rows"]}
    # 2 depths x 5 inits + scratch @2 epochs at both depths; SWS cannot make depth 1 (3 stages), WS can't make 3
    assert len(rows) == 12
    assert "smaller than the 3 SWS stages" in rows[(1, "sws", 1)]["skipped"]
    assert "ancestor too small" in rows[(3, "weight-selection", 1)]["skipped"]
    md = (out / "results.md").read_text()
    for r in report["rows"]:
        if "top1" in r:
            assert f"{r['top1']:.4f}" in md
            assert 0.0 <= r["top1"] <= 1.0 and r["train_images"] == r["epochs"] * 640
    assert rows[(3, "scratch", 1)]["lr"] == cfg.scratch_lr and rows[(3, "tleg", 1)]["lr"] == cfg.finetune_lr
    for method in ("sws", "tleg", "wave"):
        gene = load_learngene(report["learngenes"][method]["path"])
        family = rows[(3, "scratch", 1)]["params"] + rows[(1, "scratch", 1)]["params"]
        assert report["storage_ratio"][method] == pytest.approx(family / gene.num_params(), rel=1e-2)
        assert set(report["training_cost"][method]["scratch_epochs_to_match"]) <= {1, 3}
    assert report["ancestor_top1"] > 0.6

    # resume: a finished bench redoes nothing; a lost row is redone alone
    data = json.loads((out / "results.json").read_text())
    data["rows"] = [r for r in data["rows"] if (r["depth"], r["init"]) != (3, "tleg")]
    (out / "results.json").write_text(json.dumps(data))
    lines.clear()
    run_bench(cfg, out, ancestor=str(ancestor), resume=True, log=lines.append)
    lines = [line.split("] ", 1)[1] for line in lines]  # drop the elapsed-time stamp
    trained = [line for line in lines if line.startswith("d") and "top-1" in line]
    assert len(trained) == 1 and trained[0].startswith("d3 tleg")
    assert not any(line.startswith("learn ") for line in lines)  # learngenes are reused

    # a learngene passed in: its learning cost comes from its provenance (steps x batch size)
    given = report["learngenes"]["tleg"]["path"]
    cfg2 = BenchConfig(**{**cfg.__dict__, "inits": ["tleg", "scratch"], "depths": [3]})
    again = run_bench(cfg2, tmp_path / "b2", ancestor=str(ancestor), learngenes=[given], log=lines.append)
    assert again["learngenes"]["tleg"]["images"] == report["learngenes"]["tleg"]["images"] == 640


def test_unknown_init_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown init 'magic'"):
        BenchConfig(inits=["tleg", "magic"])
