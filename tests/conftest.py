import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach the network

import pytest
import torch

from lgtool.base.compat import ensure_torchvision

ensure_torchvision()
torch.set_num_threads(2)

# A tiny family: 28 px gray images, patch 7 (16 tokens), width 32 with 2 heads of 16, 10 classes.
TINY = dict(width=32, num_heads=2, img_size=28, patch_size=7, in_chans=1, num_classes=10)
RULE_OPTIONS = {"sws": dict(stages=[2, 1, 2]), "tleg": dict(aux_depth=4), "wave": dict(aux_depth=4, num_templates=3)}


def tiny_gene(method: str, seed: int = 0, **overrides):
    import lgtool

    kwargs = {**TINY, **RULE_OPTIONS[method], **overrides}
    gene = lgtool.init_learngene(method, seed=seed, **kwargs)
    # Perturb every tensor so that tests cannot pass on symmetric initial values (zeros, ones).
    g = torch.Generator().manual_seed(seed + 1)
    for t in gene.tensors.values():
        t.add_(0.05 * torch.randn(t.shape, generator=g))
    return gene


@pytest.fixture(params=["sws", "tleg", "wave"])
def method(request):
    return request.param


@pytest.fixture
def gene_file(tmp_path, method):
    path = tmp_path / f"{method}.safetensors"
    tiny_gene(method).save(path)
    return path


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `lgtool ARGS` in-process: returns (exit code, stdout, stderr)."""
    from lgtool.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["lgtool", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist",
)


@pytest.fixture(scope="session")
def ancestor(tmp_path_factory):
    """A plain timm ViT (width 64, depth 2) trained from scratch on 6000 images: about 68% top-1."""
    from lgtool.training.finetune import finetune
    from lgtool.training.settings import FinetuneConfig, TrainConfig

    out = tmp_path_factory.mktemp("ancestor") / "anc"
    cfg = TrainConfig(epochs=2, batch_size=64, lr=2e-3, warmup_epochs=0.2, kd="none", augment="none")
    settings = FinetuneConfig(init="scratch", width=64, num_heads=2, depth=2, train_samples=6000, output=out)
    result = finetune(settings, cfg)
    assert result["best_top1"] > 0.6
    return out / "best"


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 64 KiB tmpfs, where a real write runs out of space (ENOSPC); skipped where mounting is not
    allowed (not root, or a container without CAP_SYS_ADMIN)."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here")
    yield where
    subprocess.run(["umount", str(where)], check=True)
