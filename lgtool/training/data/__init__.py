"""Training data: the built-in Fashion-MNIST (in memory, augmented on the fly) or an ImageFolder (timm's reader).

Both give `Split`s with one method the training loop needs: `batches(...)` -> (images, labels) on a device,
deterministic given (seed, epoch), able to start mid-epoch (for exact resume) and to shard across DDP ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lgtool.base.errors import InputError
from lgtool.training.data.fashion_mnist import FASHION_MNIST, FASHION_MNIST_DIR, fashion_mnist, fashion_mnist_files
from lgtool.training.data.folder import FolderSplit, check_folder, image_folder, usable_workers
from lgtool.training.data.memory import TensorSplit
from lgtool.training.data.split import Split
from lgtool.training.view import View, batch_generator, seeded

__all__ = [
    "Data", "FolderSplit", "Split", "TensorSplit", "View", "balanced_subset", "batch_generator", "check_data",
    "data_paths", "load_data", "seeded", "usable_workers",
]  # fmt: skip


@dataclass
class Data:
    name: str
    train: Split  # in memory (TensorSplit) or an ImageFolder (FolderSplit)
    test: Split  # the data's own held-out images: reported numbers
    view: View  # the data's own size, channels and statistics
    val: Split | None = None  # held out of train by `held_out`: every choice is made on it

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def held_out(self, fraction: float, seed: int) -> Data:
        """Training images less a class-balanced `fraction` of them, which become the `val` split: every choice
        (rates, warmup, defaults) is made on it, so that the test split is only ever reported."""
        held = balanced_subset(self.train.labels, max(self.num_classes, round(len(self.train) * fraction)), seed)
        keep = torch.ones(len(self.train), dtype=torch.bool)
        keep[held] = False
        rest = self.train.subset(keep.nonzero().squeeze(1))
        return Data(self.name, rest, self.test, self.view, val=self.train.subset(held))


def load_data(spec: str, data_dir: str | None = None, train_samples: int | None = None, seed: int = 0) -> Data:
    """`fashion-mnist` or an ImageFolder path (with train/ and val/ subfolders, or class folders directly)."""
    if spec == FASHION_MNIST:
        data = Data(FASHION_MNIST, *fashion_mnist(_fashion_mnist_root(data_dir)))
    else:
        root = Path(spec)
        data = Data(str(root), *image_folder(root, seed))
    if train_samples is not None:
        data.train = data.train.subset(balanced_subset(data.train.labels, train_samples, seed))
    return data


def check_data(spec: str, data_dir: str | None = None) -> None:
    """What `load_data(spec, data_dir)` refuses before reading an image: missing Fashion-MNIST files, or an
    ImageFolder path that is no folder. Plans call it, so a dry run gives the run's verdict on the data's place."""
    if spec == FASHION_MNIST:
        fashion_mnist_files(_fashion_mnist_root(data_dir))
    else:
        check_folder(Path(spec))


def _fashion_mnist_root(data_dir: str | None) -> Path:
    return Path(data_dir or os.environ.get("LGTOOL_FASHION_MNIST", FASHION_MNIST_DIR))


def balanced_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` indices with classes as equal as possible, drawn deterministically from `seed`."""
    if n <= 0:
        raise InputError(f"--train-samples must be positive, got {n}")
    if n >= len(labels):
        return torch.arange(len(labels))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    # rank of each sample within its class, in random order: take rank 0 of all classes, then rank 1, ...
    shuffled = labels[perm]
    rank = torch.zeros(len(labels), dtype=torch.long)
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().squeeze(1)
        rank[where] = torch.arange(len(where))
    chosen = perm[torch.argsort(rank * len(labels) + torch.arange(len(labels)), stable=True)[:n]]
    return chosen.sort().values


def data_paths(data: str, data_dir=None) -> list:
    """What `load_data(data, data_dir)` reads, for the outputs-are-not-inputs check: the folder or files given,
    and the default Fashion-MNIST folder when that is what `fashion-mnist` means."""
    default = FASHION_MNIST_DIR if data == FASHION_MNIST and data_dir is None else None
    return [data, data_dir, default]
