"""`lgtool finetune` resume and `lgtool bench` on a tiny real subset: files, consistency, skips, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion_mnist
from safetensors.torch import load_file

import lgtool.bench.rows
import lgtool.bench.run
from lgtool.base.errors import InputError, UsageError
from lgtool.bench.cost import LEARNGENES
from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench
from lgtool.training.finetune import finetune
from lgtool.training.loop import Interrupted, TrainConfig
from lgtool.training.settings import FinetuneConfig

pytestmark = needs_fashion_mnist


def test_finetune_resume_is_exact(ancestor, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=5e-4, kd="none", log_every=1)
    full = finetune(FinetuneConfig(src=str(ancestor), train_samples=1280, output=tmp_path / "full"), cfg)

    def interrupt(**event):
        if event.get("step") == 27:  # in the second epoch, after the first best/ was written
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        finetune(
            FinetuneConfig(src=str(ancestor), train_samples=1280, output=tmp_path / "cut"), cfg, on_event=interrupt
        )
    assert (tmp_path / "cut" / "best" / "model.safetensors").is_file() and not (tmp_path / "cut" / "last").exists()
    resumed = finetune(
        FinetuneConfig(
            src=str(ancestor), train_samples=1280, output=tmp_path / "cut", resume=tmp_path / "cut" / "checkpoint.ckpt"
        ),
        cfg,
    )
    assert resumed["steps"] == full["steps"] == 40
    a, b = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "cut" / "best" / "config.json").read_text())
    assert config["lgtool"]["init"] == "scratch" and config["lgtool"]["finetune"]["data"] == "fashion-mnist"


def test_bench_on_a_tiny_subset_writes_consistent_results(ancestor, tmp_path, monkeypatch):
    cfg = BenchConfig(
        depths=[1, 3],
        width=32,
        widths=[16, 64],
        width_depths=[3],
        epochs=1,
        learn_epochs=1,
        max_epochs=2,
        min_gain=-1.0,  # run the whole (short) curve unless matched, so that the test sees it
        train_samples=704,
        batch_size=64,
        aux_depth=3,
        rule_options={"stages": [1, 1, 1], "template_size": 16},
        calibrate_steps=3,
        calibrate_samples=128,
    )
    # A 1,000-image test split keeps the test quick; every row is evaluated on it.
    real_load, reads = lgtool.bench.run.load_data, []

    def load_data(*a, **k):
        reads.append(a)
        data = real_load(*a, **k)
        data.test = data.test.subset(torch.arange(1000))
        return data

    monkeypatch.setattr(lgtool.bench.run, "load_data", load_data)
    # Every training run sees the training images less the validation split, and is judged on that split: the test
    # split is only ever reported.
    trained_on, real_fit = [], lgtool.bench.rows.fit
    monkeypatch.setattr(
        lgtool.bench.rows,
        "fit",
        lambda m, data, *a, **k: trained_on.append((data, k["evaluate_on"])) or real_fit(m, data, *a, **k),
    )
    lines = []
    report = run_bench(plan_bench(cfg, BenchIO(ancestor=str(ancestor), output=tmp_path / "b")), log=lines.append)
    out = tmp_path / "b"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(report))
    for png in ("accuracy_vs_depth.png", "time_to_accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["val_images"] == 70 and report["train_images"] == 704 - 70
    assert trained_on and all(len(d.train) == 634 and judged is d.val and len(d.val) == 70 for d, judged in trained_on)
    # the data is read once; every seed reports on the same test images and trains on its own subset and split
    assert len(reads) == 1 and len({id(d.test) for d, _ in trained_on}) == 1
    assert len({tuple(d.val.labels.tolist()) + tuple(d.train.labels[:50].tolist()) for d, _ in trained_on}) == 2
    assert report["config"]["seeds"] == [0, 1] and {r["seed"] for r in report["rows"]} == {0, 1}
    rows = {(r["depth"], r["width"], r["init"], r["epochs"]): r for r in report["rows"] if r["seed"] == 0}
    assert "smaller than the 3 SWS stages" in rows[(1, 32, "sws", 1)]["skipped"]
    for only_wave_widens in ("sws", "tleg"):  # narrower, SWS and TLEG select; wider, only WAVE can make it
        assert "WAVE" in rows[(3, 64, only_wave_widens, 1)]["skipped"]
        assert rows[(3, 16, only_wave_widens, 1)]["top1"] > 0.1 and rows[(3, 16, only_wave_widens, 1)]["params"] > 0
    # past the ancestor's 2 blocks, weight selection repeats them; its head fits the labels and is kept
    ws = rows[(3, 32, "weight-selection", 1)]
    assert ws["layers"] == [0, 0, 1] and ws["layer_policy"] == "spaced" and ws["head"] == "selected"
    assert rows[(1, 32, "weight-selection", 1)]["layer_policy"] in ("first", "spaced")
    assert rows[(3, 64, "weight-selection", 1)]["layers"] == [0, 0, 1]  # the ancestor is 64 wide: no narrowing
    # WAVE at a size other than its Aux size calibrates first, and that is counted
    assert rows[(1, 32, "wave", 1)]["calibration_images"] == 3 * 64
    assert rows[(3, 32, "wave", 1)]["calibration_images"] == 0  # the Aux size itself
    md = (out / "results.md").read_text()
    for r in report["mean_rows"]:  # results.md gives the mean over the seeds, and every mean is of every seed's row
        if "top1" in r:
            runs = [x for x in report["rows"] if (x["depth"], x["width"], x["init"], x["epochs"]) == _key(r)]
            assert len(runs) == 2 and r["top1"] == sum(x["top1"] for x in runs) / 2 and f"{r['top1']:.4f}" in md
    for r in report["rows"]:
        if "top1" not in r:
            continue
        assert r["train_images"] == r["epochs"] * 576  # 9 full batches of 64
        if r["init"] in ("kd-scratch", "weight-selection+kd"):  # the teacher runs once per distinct input (its cache)
            assert 0 < r["teacher_images"] <= r["train_images"]
            assert r["epochs"] > 1 or r["teacher_images"] == r["train_images"]  # one epoch: no input repeats
        else:
            assert r["teacher_images"] == 0
        if r["epochs"] == 1:  # the rate (warmup, layer policy) is the candidate that did best on validation
            best = max(r["tried"], key=lambda t: t["val_top1"])
            assert (r["lr"], r["warmup_epochs"], r["val_top1"]) == (best["lr"], best["warmup_epochs"], best["val_top1"])
            assert {t["lr"] for t in r["tried"]} == set(cfg.lr_grid)
        else:  # a longer budget reuses the choice its seed made at the first one
            first = next(
                x for x in report["rows"] if (*_key(x)[:3], x["epochs"], x["seed"]) == (*_key(r)[:3], 1, r["seed"])
            )
            assert len(r["tried"]) == 1 and r["lr"] == first["lr"]
    cost = report["cost"]
    assert set(cost) == {"sws", "tleg", "wave"} and report["flops"]["teacher"] > report["flops"]["d1-w32"] > 0
    for c in cost.values():
        assert c["route_flops"] == c["learn_flops"] + c["sizes_flops"]
        assert c["ratio_flops"] == round(c["alternative_flops"] / c["route_flops"], 2)
        low, high = c["ratio_flops_interval"]
        assert low <= high and c["verdict"] == (
            "cheaper" if low > 1 else "dearer" if high < 1 and c["exact"] else "tie"
        )
        assert c["marginal_flops"]["learngene"] > 0 and set(c["per_size"]) == set(c["alternative_per_size"])
    assert report["margin"]["value"] > 0 and f"{report['margin']['value']:.4f}" in md
    assert set(report["cost_at_budget"]) == {"0", "1"} and "every size @0" in md
    assert set(report["recommendation"]) == {"d1-w32", "d3-w32", "d3-w16", "d3-w64"}
    assert "cheapest route" in md and report["best_learngene"] in md
    # the family: at every size, the best on validation of every budget trained there (learngenes also as expanded)
    family = json.loads((out / "family" / "family.json").read_text())
    assert set(family) == {"d1-w32", "d3-w32", "d3-w16", "d3-w64"}
    for size, e in family.items():  # the first seed's models
        here = [
            r for r in report["rows"] if f"d{r['depth']}-w{r['width']}" == size and "val_top1" in r and not r["seed"]
        ]
        offered = [r["val_top1"] for r in here] + [r["val_at_init"] for r in here if r["init"] in LEARNGENES]
        assert e["val_top1"] == max(offered) and (out / "family" / e["path"] / "model.safetensors").is_file()
    assert report["ancestor"]["top1"] > 0.6 and report["ancestor"]["training_images"] == 2 * 6000

    # resume: a finished bench redoes nothing; a lost row is redone alone, with its own seed
    data = json.loads((out / "results.json").read_text())
    data["rows"] = [r for r in data["rows"] if (r["depth"], r["width"], r["init"], r["seed"]) != (3, 32, "tleg", 1)]
    (out / "results.json").write_text(json.dumps(data))
    lines.clear()
    run_bench(plan_bench(cfg, BenchIO(ancestor=str(ancestor), output=out, resume=True)), log=lines.append)
    lines = [line.split("] ", 1)[1] for line in lines]  # drop the elapsed-time stamp
    trained = [line for line in lines if line.startswith("d") and "test" in line]
    assert len(trained) == 1 and trained[0].startswith("d3 w32 tleg @1ep s1")
    assert not any(line.startswith("learn ") for line in lines)  # learngenes are reused

    # a learngene passed in: its learning cost comes from its provenance (steps x batch size)
    given = report["learngenes"]["tleg"]["path"]
    cfg2 = BenchConfig(**{**cfg.__dict__, "inits": ["tleg", "scratch"], "depths": [3], "widths": [], "epochs": 0})
    io = BenchIO(ancestor=str(ancestor), learngenes=[given], output=tmp_path / "b2")
    again = run_bench(plan_bench(cfg2, io), log=lines.append)
    assert again["learngenes"]["tleg"]["images"] == report["learngenes"]["tleg"]["images"] == 576
    # --epochs 0: the family as expanded; the alternatives still start at one epoch
    zero = {(r["init"], r["epochs"]): r for r in again["rows"] if r["seed"] == 0}
    assert zero[("tleg", 0)]["train_images"] == 0 and zero[("tleg", 0)]["top1"] == zero[("tleg", 0)]["top1_at_init"]
    assert ("scratch", 1) in zero and ("scratch", 0) not in zero


def _key(r):
    return r["depth"], r["width"], r["init"], r["epochs"]


def test_a_family_aware_bench_learns_every_benched_size_and_counts_each(ancestor, tmp_path):
    cfg = BenchConfig(
        depths=[1, 3],
        width=32,
        widths=[16],
        width_depths=[3],
        inits=["tleg", "scratch"],
        epochs=0,
        learn_epochs=1,
        max_epochs=1,
        train_samples=704,
        batch_size=64,
        aux_depth=3,
        learn_family=True,
        seeds=[0],
    )
    report = run_bench(plan_bench(cfg, BenchIO(ancestor=str(ancestor), output=tmp_path / "f")), log=lambda m: None)
    learned = report["learngenes"]["tleg"]
    assert learned["path"].endswith("tleg-family.safetensors")
    assert set(learned["student_images"]) == {"d1-w32", "d3-w32", "d3-w16"}  # d3-w32 is the Aux size
    assert all(n > 0 for n in learned["student_images"].values())
    flops = report["flops"]
    student = sum(3 * n * flops[size] for size, n in learned["student_images"].items())
    assert report["cost"]["tleg"]["learn_flops"] == student + learned["teacher_images"] * flops["teacher"]


def test_a_family_aware_wave_learngene_is_benched_at_its_trained_sizes_without_calibration(ancestor, tmp_path):
    cfg = BenchConfig(depths=[1, 3], width=32, widths=[16], width_depths=[3], inits=["wave"], epochs=0,
                      learn_epochs=1, max_epochs=1, train_samples=704, batch_size=64, aux_depth=3,
                      learn_family=True, rule_options={"template_size": 16}, calibrate_steps=2, seeds=[0])  # fmt: skip
    report = run_bench(plan_bench(cfg, BenchIO(ancestor=str(ancestor), output=tmp_path / "w")), log=lambda m: None)
    rows = {(r["depth"], r["width"]): r for r in report["rows"] if r["init"] == "wave"}
    assert set(rows) == {(1, 32), (3, 32), (3, 16)}
    assert all(r["calibration_images"] == 0 for r in rows.values())  # its own scalers: nothing to calibrate
    assert report["cost"]["wave"]["learn_flops"] > 0


def test_kd_scratch_is_taught_by_the_ancestor(ancestor, tmp_path):
    """finetune --ancestor (what the kd-scratch row runs) distils: the same seed without a teacher differs."""
    cfg = TrainConfig(epochs=1, batch_size=64, lr=2e-3, kd="soft", log_every=10**9)
    common = dict(init="scratch", width=32, depth=1, train_samples=640)
    taught = finetune(FinetuneConfig(output=tmp_path / "kd", ancestor=str(ancestor), **common), cfg)
    plain = finetune(FinetuneConfig(output=tmp_path / "plain", **common), cfg)
    a, b = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("kd", "plain"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "kd" / "last" / "config.json").read_text())
    assert config["lgtool"]["teacher"] == str(ancestor) and config["lgtool"]["kd"] == "soft"
    assert taught["images_seen"] == plain["images_seen"] == 640


def test_unknown_init_is_a_usage_error():
    with pytest.raises(UsageError, match="--inits must be one of sws, .*, got 'magic'"):
        BenchConfig(inits=["tleg", "magic"])


@pytest.mark.parametrize(
    "crafted",
    [
        "[1, 2]",
        '{"schema": "lgtool-bench/2", "rows": []}',
        '{"schema": "lgtool-bench/4", "rows": [{"depth": "2", "width": 64, "init": "sws", "epochs": 1, "seed": 0}]}',
        '{"schema": "lgtool-bench/4", "rows": [{"depth": 2, "width": 64, "init": "magic", "epochs": 1, "seed": 0}]}',
        '{"schema": "lgtool-bench/4", "rows": [{"depth": 2, "width": 64, "init": "sws", "epochs": 1, "seed": 0, '
        '"top1": 7.0}]}',
        '{"schema": "lgtool-bench/4", "rows": [{"depth": 2, "width": 64, "init": "sws", "epochs": -1, "seed": 0}]}',
        '{"schema": "lgtool-bench/4", "rows": {"not": "a list"}}',
        '{"schema": "lgtool-bench/4", "learned": {"0": {"sws": {"images": "many"}}}}',
        '{"schema": "lgtool-bench/4", "rows": [{"depth": 2, "width": 64, "init": "sws", "epochs": 1, "seed": -1}]}',
        "[" * 100_000,
    ],
)
def test_a_crafted_results_json_is_refused_before_any_work(tmp_path, crafted):
    out = tmp_path / "b"
    out.mkdir()
    (out / "results.json").write_text(crafted)
    before = (out / "results.json").read_bytes()
    with pytest.raises(InputError, match="results.json"):  # the data folder does not exist: never reached
        plan_bench(BenchConfig(), BenchIO(data_dir=str(tmp_path / "no-data"), output=out, resume=True))
    assert (out / "results.json").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["results.json"]


@pytest.mark.parametrize("where", ["dangling link", "a file", "below a file"])
def test_a_bench_output_that_cannot_be_a_folder_is_refused_before_any_data(tmp_path, where, run_cli):
    out = tmp_path / "b"
    if where == "dangling link":
        out.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "f").write_text("mine")
        out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "b"
    # the data folder does not exist: a refusal that came after loading data would name it instead
    code, _, err = run_cli("bench", "--data-dir", tmp_path / "no-data", "-o", out)
    assert code == 3 and len(err.strip().splitlines()) == 1 and "no-data" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["b"] if where == "dangling link" else ["f"])
    assert not (tmp_path / "nowhere").exists() and (where == "dangling link" or (tmp_path / "f").read_text() == "mine")


def test_a_deleted_working_folder_is_one_line_and_exit_3(tmp_path, run_cli, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    code, _, err = run_cli("bench", "--dry-run")
    assert code == 3 and "current folder no longer exists" in err and len(err.strip().splitlines()) == 1


def test_a_bench_resumes_only_with_the_settings_its_rows_were_made_with(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    made = BenchConfig(depths=[2, 6], epochs=1)
    (out / "results.json").write_text(json.dumps({"schema": "lgtool-bench/4", "config": asdict(made), "rows": []}))
    with pytest.raises(InputError, match=r"benched with --epochs 1, not 0; .*only --seeds may change"):
        plan_bench(BenchConfig(depths=[2, 6], epochs=0), BenchIO(output=out, resume=True))
    with pytest.raises(InputError, match=r"--depths 2,6, not 2,6,12"):
        plan_bench(BenchConfig(depths=[2, 6, 12]), BenchIO(output=out, resume=True))
    # more seeds only add rows: the plan goes on to its next check (here the data, which is not there)
    with pytest.raises(InputError, match="no-data|fashion"):
        plan_bench(BenchConfig(depths=[2, 6], seeds=[0, 1, 2]), BenchIO(data_dir=str(tmp_path / "no-data"), output=out,
                                                                         resume=True))  # fmt: skip


def _one_seed_run(folder: Path) -> Path:
    """The committed full CNN run cut to its seed 0, as a one-seed bench folder: rows, settings and learngenes."""
    committed = Path(__file__).resolve().parents[1] / "docs" / "bench-full" / "fmnist-cnn"
    full = json.loads((committed / "results.json").read_text())
    (folder / "learngenes").mkdir(parents=True)
    for info in full["learned"]["0"].values():
        shutil.copy2(committed / "learngenes" / Path(info["path"]).name, folder / "learngenes")
    one = {**full, "config": {**full["config"], "seeds": [0]}, "learned": {"0": full["learned"]["0"]},
           "rows": [r for r in full["rows"] if r["seed"] == 0]}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(one))
    return folder


def test_a_committed_one_seed_run_is_carried_into_a_bench_that_adds_seeds(tmp_path):
    """examples/bench_to_seeds.py: a one-seed run (the full CNN run's seed 0) as seed 0 of a new bench, which
    resumes with its own settings and more seeds, and refuses any other setting."""
    root, new = Path(__file__).resolve().parents[1], tmp_path / "cnn"
    one_seed = _one_seed_run(tmp_path / "one-seed")
    script = [sys.executable, root / "examples" / "bench_to_seeds.py", one_seed, new]
    assert subprocess.run(script, capture_output=True).returncode == 0
    old = json.loads((one_seed / "results.json").read_text())
    settings = {k: v for k, v in old["config"].items() if k not in ("seeds",)}
    plan = plan_bench(BenchConfig(**{**settings, "seeds": [0, 1, 2]}), BenchIO(ancestor="fmnist-cnn", output=new,
                                                                                resume=True))  # fmt: skip
    assert len(plan.previous["rows"]) == len(old["rows"]) and {r["seed"] for r in plan.previous["rows"]} == {0}
    assert (new / "learngenes" / "s0" / "sws.safetensors").is_file()
    with pytest.raises(InputError, match="--test-samples 10000, not 5000"):
        plan_bench(BenchConfig(**{**settings, "test_samples": 5000}), BenchIO(ancestor="fmnist-cnn", output=new,
                                                                               resume=True))  # fmt: skip
