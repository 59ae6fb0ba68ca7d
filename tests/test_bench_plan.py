"""`lgtool bench` as a plan and a run: `plan_bench` makes every check it can from the settings and the files'
headers, loading no tensor and writing nothing; `run_bench` loads, and still refuses before it writes. The
command's options are `BenchConfig`'s and `BenchIO`'s fields, defaults included."""

import dataclasses
import math

import pytest
from conftest import tiny_gene

import lgtool.bench.run
from lgtool.base.errors import InputError, UsageError
from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench


def _poisoned_tleg(path):
    gene = tiny_gene("tleg")
    gene.tensors["head.weight"].view(-1)[0] = math.inf
    gene.save(path)
    return path


def test_the_plan_reads_headers_only_and_the_run_refuses_before_writing(tmp_path):
    gene = _poisoned_tleg(tmp_path / "tleg.safetensors")
    with pytest.raises(InputError, match="Fashion-MNIST not found in .*no-data"):  # where the data is: checked
        plan_bench(BenchConfig(), BenchIO(data_dir=str(tmp_path / "no-data"), learngenes=[gene], output=tmp_path))
    data = tmp_path / "empty-data"  # the IDX files are there, empty: the plan does not read them
    data.mkdir()
    for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (data / f"{name}-ubyte.gz").write_bytes(b"")
    io = BenchIO(data_dir=str(data), learngenes=[gene], output=tmp_path / "out")
    plan = plan_bench(BenchConfig(), io)
    assert (plan.ancestor, plan.given, plan.previous) == ("fmnist-vit", {"tleg": gene}, {})
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="holds NaN or Inf"):  # loaded first: before the (empty) data
        run_bench(plan, log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_the_plan_checks_the_output_folder_and_the_ancestor(tmp_path):
    with pytest.raises(UsageError, match="--ancestor is required for --data"):
        plan_bench(BenchConfig(), BenchIO(data=str(tmp_path / "images"), output=tmp_path / "out"))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InputError, match="not a folder"):
        plan_bench(BenchConfig(), BenchIO(output=tmp_path / "file"))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text("{}")
    with pytest.raises(InputError, match="already holds a bench; pass --resume"):
        plan_bench(BenchConfig(), BenchIO(output=tmp_path / "done"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"depths": [2, 0]}, "--depths must be at least 1, got 0"),
        ({"inits": []}, "--inits needs at least one value"),
        ({"lr_grid": [5e-4, math.nan]}, "--lr-grid must be a finite number"),
        ({"max_epochs": 0}, "--max-epochs must be at least 1, got 0"),
        ({"width": "huge"}, "--width: unknown width 'huge'"),
        ({"width": 64, "num_heads": 3}, "not divisible by 3 heads"),
        ({"train_samples": 100}, "--train-samples 100 leaves fewer than one batch of the bench (128 images)"),
        # library-only settings: no flag to name, so the field
        ({"learn_lr": 0.0}, "BenchConfig.learn_lr must be above 0, got 0"),
        ({"calibrate_samples": 0}, "BenchConfig.calibrate_samples must be at least 1, got 0"),
        ({"min_gain": math.inf}, "BenchConfig.min_gain must be a finite number"),
    ],
)
def test_a_setting_outside_its_range_is_one_usage_error(settings, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BenchConfig(**settings)


def test_all_data_overrides_train_samples():
    assert BenchConfig(train_samples=0, all_data=True).train_samples is None


def _planned(run_cli, monkeypatch, *args):
    """The settings `lgtool bench ARGS` plans with (the plan itself is stopped)."""
    seen = {}

    def plan(cfg, io):
        seen.update(cfg=cfg, io=io)
        raise UsageError("planned")

    monkeypatch.setattr(lgtool.bench.run, "plan_bench", plan)
    code, _, err = run_cli("bench", *args)
    assert code == 2 and "planned" in err, err
    return seen["cfg"], seen["io"]


def test_the_command_defaults_are_the_fields_defaults(run_cli, monkeypatch):
    cfg, io = _planned(run_cli, monkeypatch)
    assert dataclasses.replace(cfg, width=64) == BenchConfig() and cfg.width == "64"  # the flag reads text
    assert io == BenchIO()


def test_every_flag_name_and_alias_reaches_the_plan(run_cli, monkeypatch, tmp_path):
    cfg, io = _planned(
        run_cli, monkeypatch, "-w", "32", "--scratch-max-epochs", "8", "--depths", "1, 3", "--inits", "tleg,scratch",
        "--lr-grid", "1e-3", "--all-data", "--learngene", tmp_path / "a,b", "--learngene", tmp_path / "c",
        "-o", tmp_path / "out", "--resume", "--data-dir", tmp_path,
    )  # fmt: skip
    assert (cfg.width, cfg.max_epochs, cfg.depths, cfg.lr_grid) == ("32", 8, [1, 3], [1e-3])
    assert cfg.inits == ["tleg", "scratch"]
    assert cfg.train_samples is None and cfg.all_data
    assert io.learngenes == [tmp_path / "a,b", tmp_path / "c"] and io.output == tmp_path / "out" and io.resume
    assert io.data_dir == str(tmp_path) and io.data == "fashion-mnist"
    cfg, _ = _planned(run_cli, monkeypatch, "--max-epochs", "2")
    assert cfg.max_epochs == 2
