"""`lgtool learn` on real Fashion-MNIST: distillation from a small ancestor trained here, resume, DDP, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import needs_fashion_mnist

import lgtool
from lgtool.base.atomic import scoped
from lgtool.base.errors import InputError, UsageError
from lgtool.training.data import load_data
from lgtool.training.learn import learn
from lgtool.training.loop import Diverged, Interrupted, TrainConfig, evaluate
from lgtool.training.settings import FinetuneConfig, LearnConfig

pytestmark = needs_fashion_mnist
SMALL = {"width": 32, "num_heads": 2, "aux_depth": 4, "train_samples": 3000}
STAGES = {"sws": {"stages": [2, 2]}, "tleg": {}, "wave": {"num_templates": 4}}


def quick(**kw):
    return TrainConfig(**{"epochs": 1, "batch_size": 64, "lr": 2e-3, "warmup_epochs": 0.2, **kw})


def _learn(ancestor, method, out, **kw):
    options = {**SMALL, **STAGES[method], **{k: kw.pop(k) for k in list(kw) if k in SMALL or k == "num_templates"}}
    options.pop("num_heads")
    if method == "sws":
        options.pop("aux_depth")
    cfg, on_event = kw.pop("cfg", quick()), kw.pop("on_event", None)
    return learn(
        LearnConfig(ancestor=str(ancestor), method=method, output=out, **options, **kw), cfg, on_event=on_event
    )


@pytest.mark.parametrize("method", ["sws", "tleg", "wave"])
def test_learned_gene_and_expanded_desc_net_beat_chance(ancestor, tmp_path, method):
    result = _learn(ancestor, method, tmp_path / "g.safetensors", cfg=quick(epochs=2, lr=5e-3), train_samples=6000)
    assert result["aux_top1"] > 0.45, result  # chance is 0.10; the ancestor about 0.68
    gene = lgtool.load_learngene(tmp_path / "g.safetensors")
    assert gene.meta.provenance["ancestor"] == str(ancestor) and gene.meta.provenance["kd"] == "soft"
    data = load_data("fashion-mnist")
    model = lgtool.expand(gene, depth={"sws": 3, "tleg": 6, "wave": 6}[method])  # another depth, no fine-tuning
    top1 = evaluate(model, data.test, data.view)
    assert top1 > 0.35, top1
    print(f"{method}: aux {result['aux_top1']:.3f}, expanded {top1:.3f}")


def test_sigint_saves_and_resume_is_exact(ancestor, tmp_path):
    cfg = quick(epochs=2, log_every=1)
    full = _learn(ancestor, "tleg", tmp_path / "full.safetensors", cfg=cfg)

    def interrupt(**event):
        if event.get("step") == 50:  # mid second epoch
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="interrupted at step 50"):
        _learn(ancestor, "tleg", tmp_path / "cut.safetensors", cfg=cfg, on_event=interrupt)
    assert not (tmp_path / "cut.safetensors").exists() and (tmp_path / "cut.ckpt").is_file()
    resumed = _learn(ancestor, "tleg", tmp_path / "cut.safetensors", cfg=cfg, resume=tmp_path / "cut.ckpt")
    assert resumed["steps"] == full["steps"]
    assert resumed["images_trained"] == full["images_trained"] == full["images_seen"] > resumed["images_seen"]
    assert resumed["teacher_images"] == full["teacher_images"]
    a, b = (lgtool.load_learngene(tmp_path / f).tensors for f in ("full.safetensors", "cut.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_checkpoint_of_another_method(ancestor, tmp_path):
    _learn(ancestor, "tleg", tmp_path / "t.safetensors", checkpoint=tmp_path / "t.ckpt")
    with pytest.raises(InputError, match="checkpoint is for another run"):
        _learn(ancestor, "sws", tmp_path / "s.safetensors", resume=tmp_path / "t.ckpt")


def test_a_finished_run_leaves_no_default_checkpoint(ancestor, tmp_path):
    result = _learn(ancestor, "tleg", tmp_path / "g.safetensors")
    assert result["checkpoint"] is None and sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(ancestor, tmp_path):
    checkpoint = tmp_path / "g.ckpt"
    _learn(ancestor, "tleg", tmp_path / "g.safetensors", checkpoint=checkpoint)  # a good epoch: checkpoint written
    good, gene = checkpoint.read_bytes(), (tmp_path / "g.safetensors").read_bytes()
    with pytest.raises(Diverged, match=f"NaN/inf at step .*last good checkpoint: {checkpoint}$"):
        _learn(
            ancestor,
            "tleg",
            tmp_path / "g.safetensors",
            cfg=quick(epochs=3, lr=1e12, log_every=5),
            checkpoint=checkpoint,
            resume=checkpoint,
            force=True,
        )
    assert checkpoint.read_bytes() == good and (tmp_path / "g.safetensors").read_bytes() == gene


def _lgtool(*args, env=None, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lgtool", *map(str, args)], capture_output=True, text=True, env=env, **kw
    )


def test_sigkill_loses_at_most_one_checkpoint_interval(ancestor, tmp_path):
    args = [
        "learn",
        "--ancestor",
        ancestor,
        "--method",
        "sws",
        "--width",
        32,
        "--stages",
        "2,2",
        "--epochs",
        2,
        "--batch-size",
        32,
        "--train-samples",
        2000,
        "--save-every",
        10,
        "-o",
        tmp_path / "g.safetensors",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lgtool", *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "g.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.is_file() and not (tmp_path / "g.safetensors").exists()
    step = torch.load(ckpt, weights_only=True)["position"]["step"]
    assert step >= 10
    done = _lgtool(*args, "--resume", ckpt, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 2 * (2000 // 32)
    gene = lgtool.load_learngene(tmp_path / "g.safetensors")
    fresh = lgtool.init_learngene("sws", width=32, stages=[2, 2], img_size=28, patch_size=7, in_chans=1, num_classes=10)
    assert gene.meta.tensors == fresh.meta.tensors
    assert {k: v.shape for k, v in gene.tensors.items()} == {k: v.shape for k, v in fresh.tensors.items()}


def test_two_rank_gloo_run_matches_one_process(ancestor, tmp_path):
    common = [
        "learn",
        "--ancestor",
        ancestor,
        "--method",
        "sws",
        "--width",
        32,
        "--stages",
        "2,2",
        "--epochs",
        1,
        "--train-samples",
        640,
        "--lr",
        2e-3,
        "--warmup-epochs",
        0,
    ]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "lgtool",
            *map(str, [*common, "--batch-size", 32, "--json", "-o", tmp_path / "ddp.safetensors"]),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    lines = [line for line in ddp.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 10  # only rank 0 printed; 640 / (32 x 2)
    single = _lgtool(*common, "--batch-size", 64, "-o", tmp_path / "one.safetensors")
    assert single.returncode == 0, single.stderr
    a, b = (lgtool.load_learngene(tmp_path / f).tensors for f in ("ddp.safetensors", "one.safetensors"))
    for k in a:  # shared stage blocks trained the same way under DDP as in one process with the same global batch
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=2e-5)


def test_offline_pretrained_ancestor_fails_fast_and_clearly(run_cli):
    start = time.time()
    code, _, err = run_cli("learn", "--ancestor", "deit_base", "--train-samples", 100)
    assert code == 3 and "offline" in err and "--ancestor-weights" in err and time.time() - start < 20


# Exit codes (DESIGN.md section 4): 2 a usage error (an option no command accepts), 3 an input invalid or
# missing (a file, folder or data set that does not fit: unknown model, wrong weights, unusable data).
@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--ancestor", "no_such_model_xyz"], 3, "not a timm model name"),
        (["--ancestor", "deit_tiny", "--ancestor-weights", "WEIGHTS"], 3, "weights of another architecture"),
        (["--ancestor", "ANC", "--data", "MISSING"], 3, "not found"),
        (["--ancestor", "ANC", "--data", "EMPTY"], 3, "no images found"),
        (["--ancestor", "ANC", "--data", "ONECLASS"], 3, "only one class"),
        (["--ancestor", "ANC", "--train-samples", "50", "--batch-size", "64"], 3, "larger than the 50 training images"),
        (["--ancestor", "ANC", "--resume", "WEIGHTS"], 3, "not an lgtool checkpoint"),
        (["--ancestor", "ANC", "--method", "lots"], 2, "--method must be one of sws, tleg, wave, got 'lots'"),
    ],
)
def test_bad_learn_input_is_one_line(run_cli, ancestor, tmp_path, args, code, message):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    (tmp_path / "one" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "one" / "cat" / f"{i}.png")
    subs = {
        "ANC": ancestor,
        "WEIGHTS": ancestor / "model.safetensors",
        "MISSING": tmp_path / "nope",
        "EMPTY": tmp_path / "empty",
        "ONECLASS": tmp_path / "one",
    }
    exit_code, stdout, err = run_cli("learn", *[subs.get(a, a) for a in args], "-o", tmp_path / "g.safetensors")
    assert exit_code == code, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "g.safetensors").exists()


def test_wave_calibration_learns_scalers_of_a_new_width(ancestor, tmp_path, run_cli):
    _learn(
        ancestor, "wave", tmp_path / "w.safetensors", num_templates=2, cfg=quick(epochs=2, lr=5e-3), train_samples=6000
    )
    gene = lgtool.load_learngene(tmp_path / "w.safetensors")  # width 32, one head, 2 templates per matrix type
    code, stdout, err = run_cli(
        "expand",
        tmp_path / "w.safetensors",
        "--depth",
        3,
        "--width",
        64,
        "--calibrate",
        "fashion-mnist",
        "--calibrate-steps",
        60,
        "--calibrate-samples",
        1000,
        "--json",
        "-o",
        tmp_path / "d",
    )
    assert code == 0, err
    result = json.loads(stdout)
    cal = result["calibration"]
    assert cal["steps"] == 60 and cal["top1_after"] > cal["top1_before"], cal
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "d" / "model.safetensors"))
    assert weights["blocks.0.attn.qkv.weight"].shape == (192, 64)
    assert len({k.split(".")[1] for k in weights if "blocks" in k}) == 3
    # the templates were frozen: every generated matrix is still a combination of the learngene's templates
    w = gene.rule.template_size
    t = gene.tensors["template.attn.proj.weight"].reshape(2, -1)  # (N, w*w)
    g = 64 // w
    tiles = weights["blocks.1.attn.proj.weight"].reshape(g, w, g, w).permute(0, 2, 1, 3).reshape(g * g, -1)
    coef = torch.linalg.lstsq(t.T, tiles.T).solution
    torch.testing.assert_close(coef.T @ t, tiles, atol=1e-5, rtol=1e-4)


def test_settings_check_themselves_for_a_library_caller_too(tmp_path):
    with pytest.raises(UsageError, match="--init must be one of pretrained, scratch, got 'x'"):
        FinetuneConfig(init="x", output=tmp_path / "out")  # not silently pretrained
    with pytest.raises(UsageError, match="--method must be one of sws, tleg, wave"):
        LearnConfig(ancestor="fmnist-vit", method="lots")
    with pytest.raises(UsageError, match="--family-samples must be at least 2"):
        LearnConfig(ancestor="fmnist-vit", family_samples=1)
    with pytest.raises(UsageError, match="--family-depths takes sizes"):
        LearnConfig(ancestor="fmnist-vit", family_depths="two")
    with pytest.raises(UsageError, match="not both"):
        LearnConfig(ancestor="fmnist-vit", family_depths="2-4", family=[(2, None)])
    assert LearnConfig(ancestor="fmnist-vit", family_depths="2-3", family_widths="32").sizes == [(2, 32), (3, 32)]
    with pytest.raises(UsageError, match="--depth 100000 is more than lgtool builds"):
        FinetuneConfig(init="scratch", depth=100_000, output=tmp_path / "out")


def test_the_plans_check_before_loading_anything_and_write_nothing(tmp_path, monkeypatch):
    import lgtool.training.finetune as finetuning
    import lgtool.training.learn as learning

    def loads(*args, **kwargs):
        raise AssertionError("a plan loaded a model or data")

    for module, name in [(learning, "load_data"), (learning, "load_ancestor"), (finetuning, "load_data")]:
        monkeypatch.setattr(module, name, loads)
    plan_learn, plan_finetune = scoped(learning.plan_learn), scoped(finetuning.plan_finetune)
    out = tmp_path / "g.safetensors"
    plan = plan_learn(LearnConfig(ancestor="fmnist-vit", method="tleg", output=out))
    assert plan.checkpoint == tmp_path / "g.ckpt" and not plan.keeps_checkpoint
    assert plan.cfg == TrainConfig.for_command("learn")
    with pytest.raises(InputError, match="not a timm model name"):
        plan_learn(LearnConfig(ancestor="no_such_model_xyz", output=out))
    with pytest.raises(InputError, match="no such checkpoint"):
        plan_learn(LearnConfig(ancestor="fmnist-vit", output=out, resume=tmp_path / "none.ckpt"))
    plan = plan_finetune(FinetuneConfig(src="fmnist-vit", output=tmp_path / "tuned"))
    assert plan.source.arch.embed_dim == 128 and not plan.teaches and plan.cfg.kd == "none"
    with pytest.raises(InputError, match="give a model folder to fine-tune"):
        plan_finetune(FinetuneConfig(output=tmp_path / "tuned"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a model folder"):
        plan_finetune(FinetuneConfig(src=str(tmp_path / "empty"), output=tmp_path / "tuned"))
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # nothing written
    out.write_bytes(b"")
    with pytest.raises(InputError, match="already exists"):
        plan_learn(LearnConfig(ancestor="fmnist-vit", output=out))


def test_learn_orders_the_width_so_a_narrower_expand_keeps_what_matters(ancestor, tmp_path, run_cli):
    """By default `learn` reorders an SWS learngene's channels by importance (`lgtool.order`): the same training
    with --keep-order computes the same function at full width, and its half-width Desc-Net, as expanded, is worse."""
    runs = {}
    for name, extra in (("ordered", []), ("kept", ["--keep-order"])):
        out = tmp_path / f"{name}.safetensors"
        args = ["--ancestor", ancestor, "--stages", "2,2", "--width", 32, "--num-heads", 2, "--train-samples", 3000]
        args += ["--epochs", 2, "--batch-size", 64, "--lr", 5e-3, "--warmup-epochs", 0.2, "--json", "-o", out]
        code, stdout, err = run_cli("learn", *args, *extra)
        assert code == 0, err
        runs[name] = (json.loads(stdout), lgtool.load_learngene(out))
    assert runs["ordered"][0]["ordering_images"] == 1000 and runs["kept"][0]["ordering_images"] == 0
    assert "ordering" in runs["ordered"][1].meta.provenance and "ordering" not in runs["kept"][1].meta.provenance
    data = load_data("fashion-mnist")
    x, _ = next(iter(data.test.batches(data.view, 64, train=False)))
    same = [lgtool.expand(gene, depth=3)(x) for _, gene in runs.values()]
    torch.testing.assert_close(*same, atol=1e-4, rtol=1e-4)
    top1 = {
        name: evaluate(lgtool.expand(gene, depth=3, width=16), data.test, data.view) for name, (_, gene) in runs.items()
    }
    assert top1["ordered"] > top1["kept"] + 0.05, top1


def test_calibration_of_an_sws_desc_net_relearns_its_norms_and_biases_only(ancestor, tmp_path, run_cli):
    _learn(ancestor, "sws", tmp_path / "s.safetensors", train_samples=3000)
    expanded = []
    for name, extra in (("plain", []), ("calibrated", ["--calibrate", "fashion-mnist", "--calibrate-steps", 30])):
        args = ["expand", tmp_path / "s.safetensors", "--depth", 6, "--width", 16, "--json", "-o", tmp_path / name]
        code, stdout, err = run_cli(*args, "--calibrate-samples", 1000, *extra)
        assert code == 0, err
        expanded.append(json.loads(stdout))
    cal = expanded[1]["calibration"]
    assert cal["learned"] == "norms and biases" and cal["steps"] == 30 and cal["images"] == 30 * 64
    assert cal["top1_after"] > cal["top1_before"], cal
    from safetensors.torch import load_file

    plain, calibrated = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("plain", "calibrated"))
    for key in plain:
        changed = not torch.equal(plain[key], calibrated[key])
        module = key.split(".")[-2] if "." in key else ""
        assert changed == (key.endswith(".bias") or module.startswith("norm")), key
