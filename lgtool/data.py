"""Training data: the built-in Fashion-MNIST (in memory, augmented on the fly) or an ImageFolder (timm's reader).

Both give `Split`s with one method the training loop needs: `batches(...)` -> (images, labels) on a device,
deterministic given (seed, epoch), able to start mid-epoch (for exact resume) and to shard across DDP ranks.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lgtool.errors import InputError

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class View:
    """How a model wants its images: size, channels, normalization."""

    img_size: int
    in_chans: int
    mean: tuple
    std: tuple
    crop_pct: float = 0.875
    interpolation: str = "bicubic"


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def global_batches(order: torch.Tensor, size: int, drop_last: bool) -> list[torch.Tensor]:
    """Batches of `size` indices (over all ranks); each rank then takes every world-th sample of each."""
    stop = len(order) - len(order) % size if drop_last else len(order)
    return [order[i : i + size] for i in range(0, stop, size)]


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """Augmentation randomness of one global batch: independent of rank count and of where a run resumed."""
    return torch.Generator().manual_seed(((seed * 1_000_003) + epoch) * 1_000_003 + batch)


@dataclass
class TensorSplit:
    """A split held in memory as uint8 images (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[index], self.labels[index], self.classes)

    def batches(
        self,
        view: View,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
        device="cpu",
        augment: str = "flip",
    ):
        order = epoch_order(len(self), seed, epoch, shuffle=train)
        for i, index in enumerate(global_batches(order, batch_size * world, drop_last=train)):
            if i < start:
                continue
            x = self.images[index]
            if train:
                x = augment_small(x, batch_generator(seed, epoch, i), augment)
            mine = slice(rank, None, world)
            yield prepare(x[mine], view, device), self.labels[index][mine].to(device, non_blocking=True)


def augment_small(x: torch.Tensor, gen: torch.Generator, mode: str = "flip") -> torch.Tensor:
    """For small in-memory images (uint8): horizontal flip, optionally after a random crop with 2-px padding."""
    n, _, h, w = x.shape
    if mode == "none":
        return x
    if mode == "crop-flip":
        dy, dx = torch.randint(0, 5, (2, n), generator=gen)
        windows = F.pad(x, (2, 2, 2, 2)).unfold(2, h, 1).unfold(3, w, 1)  # (n, C, 5, 5, h, w), a view
        x = windows[torch.arange(n), :, dy, dx]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def prepare(x: torch.Tensor, view: View, device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalized float at the view's size and channel count."""
    x = x.to(device, non_blocking=True).float().div_(255)
    if x.shape[1] != view.in_chans:
        x = x.mean(1, keepdim=True).expand(-1, view.in_chans, -1, -1)
    if x.shape[-1] != view.img_size:
        x = F.interpolate(x, size=(view.img_size, view.img_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(view.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(view.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


@dataclass
class FolderSplit:
    """An ImageFolder split read through timm's dataset and transforms."""

    root: Path
    index: torch.Tensor  # which samples of the folder belong to this split
    classes: list[str]
    workers: int = 2

    def __len__(self):
        return len(self.index)

    def subset(self, index: torch.Tensor) -> FolderSplit:
        return FolderSplit(self.root, self.index[index], self.classes, self.workers)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([self._dataset(None).reader.samples[i][1] for i in self.index.tolist()])

    def _dataset(self, transform):
        from lgtool._compat import import_timm

        import_timm()
        from timm.data import create_dataset

        return create_dataset("", root=str(self.root), transform=transform)

    def batches(
        self,
        view: View,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
        device="cpu",
        augment: str = "flip",
    ):
        from timm.data import create_transform

        transform = create_transform(
            view.img_size,
            is_training=train,
            mean=view.mean,
            std=view.std,
            crop_pct=view.crop_pct,
            interpolation=view.interpolation,
        )
        dataset = self._dataset(transform)
        order = self.index[epoch_order(len(self), seed, epoch, shuffle=train)]
        sampler = [b[rank::world].tolist() for b in global_batches(order, batch_size * world, drop_last=train)][start:]
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=self.workers, pin_memory=str(device).startswith("cuda")
        )
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if x.shape[1] != view.in_chans:
                x = x.mean(1, keepdim=True).expand(-1, view.in_chans, -1, -1)
            yield x, y.to(device, non_blocking=True)


@dataclass
class Data:
    name: str
    train: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit  # held out: evaluation each epoch
    view: View  # the data's own size, channels and statistics

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_data(spec: str, data_dir: str | None = None, train_samples: int | None = None, seed: int = 0) -> Data:
    """`fashion-mnist` or an ImageFolder path (with train/ and val/ subfolders, or class folders directly)."""
    if spec == FASHION_MNIST:
        data = _fashion_mnist(Path(data_dir or os.environ.get("LGTOOL_FASHION_MNIST", FASHION_MNIST_DIR)))
    else:
        data = _image_folder(Path(spec), seed)
    if train_samples is not None:
        data.train = data.train.subset(balanced_subset(data.train.labels, train_samples, seed))
    return data


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


def _idx(path: Path) -> torch.Tensor:
    import numpy as np

    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def _fashion_mnist(root: Path) -> Data:
    files = {
        k: root / f"{k}-ubyte.gz"
        for k in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
    }
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise InputError(
            f"Fashion-MNIST not found in {root} (missing {missing[0]}): install it with "
            "`apt-get install dataset-fashion-mnist` or point --data-dir at the IDX .gz files"
        )
    try:
        train = TensorSplit(
            _idx(files["train-images-idx3"]).unsqueeze(1),
            _idx(files["train-labels-idx1"]).long(),
            FASHION_MNIST_CLASSES,
        )
        test = TensorSplit(
            _idx(files["t10k-images-idx3"]).unsqueeze(1), _idx(files["t10k-labels-idx1"]).long(), FASHION_MNIST_CLASSES
        )
    except (OSError, EOFError, ValueError) as e:
        raise InputError(f"Fashion-MNIST files in {root} are unreadable: {e}") from None
    mean, std = FASHION_MNIST_STATS
    return Data(FASHION_MNIST, train, test, View(28, 1, mean, std, crop_pct=1.0, interpolation="bilinear"))


def _image_folder(root: Path, seed: int) -> Data:
    from lgtool._compat import import_timm

    if not root.is_dir():
        raise InputError(f"data folder {root} not found (give an ImageFolder path or `fashion-mnist`)")
    import_timm()
    from timm.data import create_dataset

    def read(path):
        try:
            return create_dataset("", root=str(path))
        except (RuntimeError, FileNotFoundError) as e:
            raise InputError(f"{path}: no images found ({e})") from None

    train_dir, val_dir = root / "train", next((root / d for d in ("val", "validation") if (root / d).is_dir()), None)
    train_ds = read(train_dir if train_dir.is_dir() and val_dir else root)
    classes = [c for c, _ in sorted(train_ds.reader.class_to_idx.items(), key=lambda kv: kv[1])]
    if len(train_ds) == 0:
        raise InputError(f"{root}: no images found")
    if len(classes) < 2:
        raise InputError(f"{root}: only one class ({classes[0] if classes else '-'}); a classifier needs two or more")
    n = len(train_ds)
    if train_dir.is_dir() and val_dir:
        val_ds = read(val_dir)
        train = FolderSplit(train_dir, torch.arange(n), classes)
        test = FolderSplit(val_dir, torch.arange(len(val_ds)), classes)
    else:  # one folder of class folders: hold out 10% (at least one image)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        k = max(1, n // 10)
        train, test = (
            FolderSplit(root, perm[k:].sort().values, classes),
            FolderSplit(root, perm[:k].sort().values, classes),
        )
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return Data(str(root), train, test, View(224, 3, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
