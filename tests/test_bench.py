"""`lgtool finetune` resume and `lgtool bench` on a tiny real subset: files, consistency, skips, resume."""

import json
import os
import signal

import pytest
import torch
from conftest import needs_fashion_mnist
from safetensors.torch import load_file

from lgtool.bench import BenchConfig, run_bench
from lgtool.bench_report import training_cost
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
        widths=[64],
        width_depths=[3],
        epochs=1,
        learn_epochs=1,
        scratch_max_epochs=2,
        min_gain=-1.0,  # always run the whole (short) curve, so that the test sees it
        train_samples=640,
        batch_size=64,
        aux_depth=3,
        rule_options={"stages": [1, 1, 1], "template_size": 16},
        calibrate_steps=3,
        calibrate_samples=128,
    )
    lines = []
    report = run_bench(cfg, tmp_path / "b", ancestor=str(ancestor), log=lines.append)
    out = tmp_path / "b"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(report))
    for png in ("accuracy_vs_depth.png", "time_to_accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["depth"], r["width"], r["init"], r["epochs"]): r for r in report["rows"]}
    # 3 sizes x 7 inits, + scratch @2 epochs where scratch did not already match the best learngene
    curve = [k for k in rows if k[2] == "scratch" and k[3] == 2]
    assert len(rows) == 21 + len(curve)
    assert "smaller than the 3 SWS stages" in rows[(1, 32, "sws", 1)]["skipped"]
    assert "ancestor too small" in rows[(3, 32, "weight-selection", 1)]["skipped"]
    for other_width_only_wave_changes in ("sws", "tleg"):
        assert "use a WAVE learngene" in rows[(3, 64, other_width_only_wave_changes, 1)]["skipped"]
    # WAVE at a size other than its Aux size calibrates first, and that is counted
    assert rows[(3, 64, "wave", 1)]["calibration_images"] == 3 * 64
    assert rows[(1, 32, "wave", 1)]["calibration_images"] == 3 * 64
    assert rows[(3, 32, "wave", 1)]["calibration_images"] == 0  # the Aux size itself
    md = (out / "results.md").read_text()
    for r in report["rows"]:
        if "top1" in r:
            assert f"{r['top1']:.4f}" in md
            assert r["top1"] > 0.2 and r["train_images"] == r["epochs"] * 640  # chance is 0.1
    # every row states its rate and where it came from: timm inits the scratch rate, inherited ones the fine-tune rate
    for (_, _, init, _), r in rows.items():
        if "lr" in r:
            scratch = init in ("scratch", "kd-scratch")
            assert r["lr"] == (cfg.scratch_lr if scratch else cfg.finetune_lr)
            assert r["lr_from"] == ("scratch rate" if scratch else "fine-tune rate")
    # kd rows: the teacher saw every training image; the others trained without it
    assert rows[(3, 32, "kd-scratch", 1)]["teacher_images"] == 640
    assert rows[(3, 32, "scratch", 1)]["teacher_images"] == 0
    assert report["teacher_images"]["baselines"] == sum(r.get("teacher_images", 0) for r in report["rows"])
    for method in ("sws", "tleg", "wave"):
        gene = load_learngene(report["learngenes"][method]["path"])
        assert report["storage_ratio"][method] == pytest.approx(report["family_params"] / gene.num_params(), rel=1e-2)
        cost = report["training_cost"][method]
        assert cost["route_images"] == cost["learn_images"] + cost["calibration_images"] + cost["finetune_images"]
    assert report["ancestor"]["top1"] > 0.6 and report["ancestor"]["training_images"] == 2 * 6000

    # resume: a finished bench redoes nothing; a lost row is redone alone
    data = json.loads((out / "results.json").read_text())
    data["rows"] = [r for r in data["rows"] if (r["depth"], r["width"], r["init"]) != (3, 32, "tleg")]
    (out / "results.json").write_text(json.dumps(data))
    lines.clear()
    run_bench(cfg, out, ancestor=str(ancestor), resume=True, log=lines.append)
    lines = [line.split("] ", 1)[1] for line in lines]  # drop the elapsed-time stamp
    trained = [line for line in lines if line.startswith("d") and "top-1" in line]
    assert len(trained) == 1 and trained[0].startswith("d3 w32 tleg")
    assert not any(line.startswith("learn ") for line in lines)  # learngenes are reused

    # a learngene passed in: its learning cost comes from its provenance (steps x batch size)
    given = report["learngenes"]["tleg"]["path"]
    cfg2 = BenchConfig(**{**cfg.__dict__, "inits": ["tleg", "scratch"], "depths": [3], "widths": []})
    again = run_bench(cfg2, tmp_path / "b2", ancestor=str(ancestor), learngenes=[given], log=lines.append)
    assert again["learngenes"]["tleg"]["images"] == report["learngenes"]["tleg"]["images"] == 640


def test_training_cost_of_hand_made_rows():
    def row(depth, init, epochs, top1, images=100, calibration=0):
        return dict(
            depth=depth,
            width=64,
            init=init,
            epochs=epochs,
            top1=top1,
            train_images=images,
            calibration_images=calibration,
        )

    rows = [
        row(2, "scratch", 1, 0.70),
        row(2, "scratch", 2, 0.78, 200),
        row(2, "scratch", 4, 0.82, 400),
        row(4, "scratch", 1, 0.72),
        row(4, "scratch", 2, 0.75, 200),  # stopped improving enough: no match
        row(2, "tleg", 1, 0.80),
        row(4, "tleg", 1, 0.85),
        row(2, "wave", 1, 0.60, calibration=50),
        row(4, "wave", 1, 0.79, calibration=50),
        row(6, "tleg", 1, 0.90),  # no scratch curve at depth 6: in neither route
    ]
    learn = {"tleg": {"images": 300, "teacher_images": 300}, "wave": {"images": 200, "teacher_images": 200}}
    cost = training_cost(rows, learn, epochs=1)
    tleg, wave = cost["tleg"], cost["wave"]
    assert tleg["scratch_epochs_to_match"] == {"d2-w64": 4, "d4-w64": ">2"}
    assert (tleg["scratch_images"], tleg["route_images"]) == (400 + 200, 300 + 100 + 100)
    assert tleg["ratio"] == 1.2 and tleg["exact"] is False  # a lower bound: scratch never matched depth 4
    assert wave["scratch_epochs_to_match"] == {"d2-w64": 1, "d4-w64": ">2"}
    assert (wave["calibration_images"], wave["route_images"], wave["scratch_images"]) == (100, 500, 300)
    assert wave["teacher_images"] == 200 and wave["ratio"] == 0.6
    # a learngene whose learning cost is unknown has no ratio rather than a flattering one
    assert training_cost(rows, {"tleg": {"images": None}}, epochs=1)["tleg"]["ratio"] is None


def test_kd_scratch_is_taught_by_the_ancestor(ancestor, tmp_path):
    """finetune --ancestor (what the kd-scratch row runs) distils: the same seed without a teacher differs."""
    cfg = TrainConfig(epochs=1, batch_size=64, lr=2e-3, kd="soft", log_every=10**9)
    common = dict(init="scratch", width=32, depth=1, train_samples=640)
    taught = finetune(None, "fashion-mnist", tmp_path / "kd", ancestor=str(ancestor), cfg=cfg, **common)
    plain = finetune(None, "fashion-mnist", tmp_path / "plain", cfg=cfg, **common)
    a, b = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("kd", "plain"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "kd" / "last" / "config.json").read_text())
    assert config["lgtool"]["teacher"] == str(ancestor) and config["lgtool"]["kd"] == "soft"
    assert taught["images_seen"] == plain["images_seen"] == 640


def test_unknown_init_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown init 'magic'"):
        BenchConfig(inits=["tleg", "magic"])
