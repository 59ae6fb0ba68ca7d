"""A training that cannot fit in memory is refused before it starts, in one line that names --batch-size; memory
that runs out where no check saw it coming is one line too, never a traceback."""

import pytest
import torch
from conftest import tiny_gene
from test_bad_input import refused, workspace  # noqa: F401 - the fixture
from test_clobber import LEARN
from test_failure_classes import OUT_OF_MEMORY

import lgtool.base.arch
import lgtool.materialize
import lgtool.training.finetune
import lgtool.training.learn
from lgtool.base.arch import Arch, build_vit, check_training_memory, train_bytes
from lgtool.base.errors import InputError

ARCHS = {
    "28px-w64-d4": Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=4, num_heads=2, num_classes=10),
    "224px-w192-d2": Arch(img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=2, num_heads=3),
    "32px-w96-d3-cls": Arch(
        img_size=32, patch_size=4, in_chans=3, embed_dim=96, depth=3, num_heads=4, class_token=True
    ),
}


def saved_for_backward(arch: Arch, batch: int) -> int:
    """Bytes of the activations autograd keeps for the backward of one forward (the weights left out)."""
    model = build_vit(arch).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size)).sum()
    return sum(kept.values())


@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_train_bytes_covers_what_autograd_keeps_and_little_more(arch):
    # the estimate must cover what the backward keeps; the rest (up to half again) is what the backward itself
    # allocates on the way, which a step's peak also holds
    ratio = train_bytes(arch, 8) / saved_for_backward(arch, 8)
    assert 1.0 <= ratio <= 1.5, ratio


def test_check_training_memory_counts_the_copies_and_the_backward(monkeypatch):
    arch, batch = ARCHS["28px-w64-d4"], 32
    need = 4 * arch.num_params() * 4 + train_bytes(arch, batch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: need)
    check_training_memory(arch, "finetune", batch)  # fits exactly
    with pytest.raises(InputError, match=r"smaller --batch-size than 33"):
        check_training_memory(arch, "finetune", batch + 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes on this machine hold two of everything
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: 2 * need - 1)
    with pytest.raises(InputError):
        check_training_memory(arch, "finetune", batch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # on a GPU the host's memory is not what fills
    check_training_memory(arch, "finetune", batch)


def test_finetune_at_a_batch_beyond_memory_is_refused_before_the_model_loads(run_cli, tmp_path, workspace, monkeypatch):  # noqa: F811
    src, arch = workspace / "vit", lgtool.training.finetune.read_source(workspace / "vit").arch
    weights = 4 * arch.num_params() * 4
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: weights + train_bytes(arch, 64))
    monkeypatch.setattr(lgtool.training.finetune, "load_source", lambda *a: pytest.fail("loaded before the refusal"))
    args = ("finetune", src, "--data-dir", workspace / "fm", "--epochs", 1, "-o", tmp_path / "out")
    line = refused(run_cli, tmp_path, *args, "--batch-size", 128, code=3, says="use a smaller --batch-size than 128")
    assert line.startswith("error: finetune: a model of ")


@pytest.mark.parametrize(
    "error",
    [*OUT_OF_MEMORY.values(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")],
    ids=[*OUT_OF_MEMORY.keys(), "cuda"],
)
def test_memory_running_out_unforeseen_is_one_line(run_cli, tmp_path, monkeypatch, error):
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)

    def build(*args, **kwargs):
        raise error

    monkeypatch.setattr(lgtool.materialize, "desc_tensors", build)
    code, out, err = run_cli("expand", gene, "-o", tmp_path / "desc")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(("error: out of memory (", "error: Cannot allocate memory")), err


def test_a_runtime_error_that_is_not_memory_keeps_its_traceback(run_cli, tmp_path, monkeypatch):
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)

    def build(*args, **kwargs):
        raise RuntimeError("a programming error")

    monkeypatch.setattr(lgtool.materialize, "desc_tensors", build)
    with pytest.raises(RuntimeError, match="a programming error"):
        run_cli("expand", gene, "-o", tmp_path / "desc")


def test_learn_at_a_batch_beyond_memory_is_refused_before_training(run_cli, tmp_path, workspace, monkeypatch):  # noqa: F811
    # LEARN's Aux-Net: a TLEG of depth 2, width 32 on 28 px images (7 px patches)
    aux = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: 4 * 4 * aux.num_params() + train_bytes(aux, 64))
    monkeypatch.setattr(lgtool.training.learn, "fit", lambda *a, **k: pytest.fail("trained before the refusal"))
    args = ["learn", "--ancestor", workspace / "vit", "--data-dir", workspace / "fm", *LEARN, "-o", tmp_path / "g"]
    line = refused(run_cli, tmp_path, *args[:-2], "--batch-size", 256, *args[-2:], code=3, says="--batch-size than 256")
    assert line.startswith("error: learn (the Aux-Net): a model of ")


def test_expand_calibrate_counts_its_training(run_cli, tmp_path, workspace, monkeypatch):  # noqa: F811
    gene = tmp_path / "gene.safetensors"
    tiny_gene("sws").save(gene)
    target = lgtool.load_learngene(gene).arch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    room = 3 * 4 * target.num_params() + train_bytes(target, 64) // 2  # the Desc-Net, not its calibration's backward
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: room)
    calibrate = ("--calibrate", "fashion-mnist", "--data-dir", workspace / "fm")
    refused(run_cli, tmp_path, "expand", gene, *calibrate, "-o", tmp_path / "d", code=3, says="expand --calibrate: ")
    assert run_cli("expand", gene, "-o", tmp_path / "d")[0] == 0  # without --calibrate it fits


def test_a_bench_whose_largest_size_cannot_train_is_refused_naming_it(monkeypatch):
    from lgtool.bench.run import BenchConfig, check_sizes_fit

    arch = ARCHS["28px-w64-d4"]
    cfg = BenchConfig(depths=[2, 16], widths=[32, 128], width_depths=[6])
    largest = arch.resized(16, 64)  # d6-w128 has more weights, but a smaller backward
    need = 16 * largest.num_params() + train_bytes(largest, cfg.batch_size)
    assert need > 16 * arch.resized(6, 128).num_params() + train_bytes(arch.resized(6, 128), cfg.batch_size)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: need - 1)
    with pytest.raises(InputError, match=r"^bench \(its size d16-w64\): .* bench smaller --depths or --widths"):
        check_sizes_fit(arch, cfg)
    monkeypatch.setattr(lgtool.base.arch, "available_memory", lambda: need)
    check_sizes_fit(arch, cfg)
