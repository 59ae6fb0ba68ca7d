"""Data: class-balanced subsets, deterministic batches, and an ImageFolder through timm's reader."""

import json

import torch

from lgtool.base.normalization import Normalization
from lgtool.training.data import TensorSplit, View, balanced_subset, load_data
from lgtool.training.settings import TrainConfig

PLAIN = TrainConfig(augment="none")


def test_balanced_subset_is_balanced_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    a, b = balanced_subset(labels, 30, seed=3), balanced_subset(labels, 30, seed=3)
    assert torch.equal(a, b) and labels[a].bincount().tolist() == [10, 10, 10]
    assert (
        balanced_subset(labels, 70, seed=0).numel() == 70 and labels[balanced_subset(labels, 70, 0)].bincount()[2] == 20
    )


def test_batches_shard_one_global_batch_across_ranks():
    split = TensorSplit(torch.arange(64, dtype=torch.uint8).view(16, 1, 2, 2).repeat(1, 1, 1, 1), torch.arange(16))
    view = View(2, 1, Normalization(mean=[0.0], std=[1 / 255]))
    one = [y for _, y in split.batches(view, 4, train=True, seed=1, epoch=2, recipe=PLAIN)]
    two = [
        [y for _, y in split.batches(view, 2, train=True, seed=1, epoch=2, rank=r, world=2, recipe=PLAIN)]
        for r in (0, 1)
    ]
    for i, batch in enumerate(one):
        assert sorted(torch.cat([two[0][i], two[1][i]]).tolist()) == sorted(batch.tolist())
    later = [y for _, y in split.batches(view, 4, train=True, seed=1, epoch=2, start=2, recipe=PLAIN)]
    assert all(torch.equal(a, b) for a, b in zip(later, one[2:], strict=True))  # resume mid-epoch


def test_image_folder_finetune(tmp_path, run_cli):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, color in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            folder = tmp_path / "imgs" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(0, 40, (16, 16, 3), generator=g).numpy().astype("uint8")
                Image.fromarray(noise + torch.tensor(color).numpy().astype("uint8")).save(folder / f"{i}.png")
    data = load_data(str(tmp_path / "imgs"))
    assert data.classes == ["class0", "class1", "class2"] and len(data.train) == 36 and len(data.test) == 12
    code, stdout, err = run_cli(
        "finetune",
        "--init",
        "scratch",
        "--data",
        tmp_path / "imgs",
        "--width",
        32,
        "--num-heads",
        2,
        "--depth",
        2,
        "--img-size",
        32,
        "--patch-size",
        8,
        "--epochs",
        2,
        "--batch-size",
        12,
        "--lr",
        3e-3,
        "--json",
        "-o",
        tmp_path / "out",
    )
    assert code == 0, err
    result = json.loads(stdout)
    # Three classes told apart by colour: chance is 1/3, and 6 steps reach 12/12 (seeds 0-5 all gave 1.0).
    assert result["steps"] == 6 and result["best_top1"] >= 0.75, result
    config = json.loads((tmp_path / "out" / "best" / "config.json").read_text())
    assert config["model_args"]["in_chans"] == 3 and config["model_args"]["img_size"] == 32
