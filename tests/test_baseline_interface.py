"""Every baseline module has the same shape, nothing outside `lgtool/baselines/` decides by a baseline's name, and
a fifth baseline is one module plus one line in `BASELINES` (tests/toy_baseline.py), as a rule is
(tests/test_rule_interface.py)."""

import json
import re
from pathlib import Path

import pytest
import toy_baseline
from conftest import needs_fashion_mnist, tiny_gene

import lgtool
from lgtool.base.errors import InputError, UsageError
from lgtool.baselines import BASELINES, BaselineModule, policy_names, race_order, references, same_start
from lgtool.bench.cost import family_cost, init_names
from lgtool.bench.run import BenchConfig, BenchIO, plan_bench, run_bench

# The interface `BaselineModule` states: its attributes, then its functions.
INTERFACE = (*BaselineModule.__annotations__, *(name for name in vars(BaselineModule) if not name.startswith("_")))


@pytest.mark.parametrize("module", [*BASELINES.values(), toy_baseline], ids=lambda m: m.__name__)
def test_every_baseline_module_has_the_same_functions(module):
    assert len(INTERFACE) == 7  # 4 attributes, 3 functions: the derivation above found them all
    missing = [name for name in INTERFACE if not hasattr(module, name)]
    assert not missing, missing


def test_no_baseline_names_outside_the_baselines():
    """No comparison with a baseline's name, no prefix test on one and no per-baseline table outside lgtool/baselines/
    (a default is fine). Under lgtool/training/ "scratch" is also `finetune --init`'s own value, not the bench's."""
    root = Path(lgtool.__file__).parent

    def pattern(names):
        name = "[\"'](" + "|".join(re.escape(n) for n in names) + ")[\"']"
        return re.compile(
            rf"(==|!=|\bin)\s*[(\[{{]?\s*{name}|{name}\s*:|(startswith|endswith)\({name}|{name}\s*,\s*{name}"
            rf"|\(\s*{name}\s*,\s*\)"
        )

    everywhere, training = pattern(BASELINES), pattern([n for n in BASELINES if n != "scratch"])
    offenders = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in root.rglob("*.py")
        if "baselines" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if (training if "training" in path.parts else everywhere).search(line)
    ]
    assert not offenders, offenders


def test_the_registry_keeps_the_benchs_order_and_shared_starts():
    """What used to be tables in the bench, now read from the modules: unchanged."""
    assert list(BASELINES) == ["scratch", "kd-scratch", "weight-selection", "weight-selection+kd"]  # rows, colours
    assert race_order() == ["weight-selection", "scratch", "weight-selection+kd", "kd-scratch"]
    assert [same_start(n) for n in BASELINES] == ["scratch", "scratch", "weight-selection", "weight-selection"]
    assert same_start("tleg") == "tleg" and references() == ("scratch",)
    assert [n for n, m in BASELINES.items() if m.DISTILS] == ["kd-scratch", "weight-selection+kd"]
    assert policy_names() == ("first", "spaced")


def test_a_registered_baseline_is_an_init_and_an_alternative(monkeypatch):
    """One line in `BASELINES`: a choice of --inits, and a run the cost compares with, without a bench."""
    with pytest.raises(UsageError, match="--inits must be one of .*, got 'top-blocks'"):
        BenchConfig(inits=["tleg", "top-blocks"])
    monkeypatch.setitem(BASELINES, "top-blocks", toy_baseline)
    assert init_names()[-1] == "top-blocks" and race_order()[0] == "top-blocks"
    assert BenchConfig(inits=["tleg", "top-blocks"]).inits == ["tleg", "top-blocks"]
    flops = {"teacher": 100, "d2-w64": 10, "d8-w64": 40}
    rows = [
        {"depth": 2, "width": 64, "init": "tleg", "epochs": 1, "val_top1": 0.80, "train_images": 100},
        {"depth": 2, "width": 64, "init": "scratch", "epochs": 1, "val_top1": 0.81, "train_images": 200},
        {"depth": 2, "width": 64, "init": "top-blocks", "epochs": 1, "val_top1": 0.80, "train_images": 100},
    ]
    rows = [{**r, "top1": r["val_top1"], "teacher_images": 0} for r in rows]
    cost = family_cost(rows, {"tleg": {"images": 10, "aux_size": "d8-w64"}}, flops, epochs=1)["tleg"]
    assert cost["alternative_per_size"] == {"d2-w64": "top-blocks@1"}  # as good as scratch, at half its images


@needs_fashion_mnist
def test_a_fifth_baseline_runs_through_the_bench_without_touching_other_files(monkeypatch, tmp_path):
    monkeypatch.setitem(BASELINES, "top-blocks", toy_baseline)  # the one line
    cfg = BenchConfig(
        depths=[1], width=32, inits=["tleg", "top-blocks", "kd-scratch"], epochs=1, max_epochs=1, lr_grid=[2e-3],
        train_samples=320, test_samples=200, batch_size=32, seeds=[0],
        tie_margin=0.99,  # every run matches: the cheapest is the best alternative
    )  # fmt: skip
    gene, out = tiny_gene("tleg").save(tmp_path / "tleg.safetensors"), tmp_path / "b"  # given: nothing to learn
    io = dict(ancestor="fmnist-vit", learngenes=[gene], output=out)
    report = run_bench(plan_bench(cfg, BenchIO(**io, no_family=True)), log=lambda m: 0)
    rows = {r["init"]: r for r in report["rows"]}
    assert list(rows) == ["tleg", "kd-scratch", "top-blocks"]  # in the registries' order: registered last
    toy, kd = rows["top-blocks"], rows["kd-scratch"]
    # its start: the ancestor's last of 8 blocks; its layer policy picked on validation like weight selection's
    assert toy["layers"] == [7] and toy["head"] == "selected" and toy["layer_policy"] in ("first", "spaced")
    assert {t["layer_policy"] for t in toy["tried"]} == {"first", "spaced"}
    assert toy["teacher_images"] == 0 < kd["teacher_images"]  # it does not distil; kd-scratch does
    assert report["cost"]["tleg"]["alternative_per_size"] == {"d1-w32": "top-blocks@1"}  # no teacher: cheaper
    assert report["recommendation"]["d1-w32"]["route"] == "top-blocks@1"
    assert "top-blocks" in (out / "results.md").read_text()
    # the rows it wrote are resumed while it is registered, and refused once it is not
    assert len(plan_bench(cfg, BenchIO(**io, resume=True)).previous["rows"]) == 3
    monkeypatch.delitem(BASELINES, "top-blocks")
    with pytest.raises(InputError, match="results.json: cannot resume from it .*top-blocks"):
        plan_bench(cfg, BenchIO(**io, resume=True))
    assert json.loads((out / "results.json").read_text())["rows"][2]["init"] == "top-blocks"
