"""The built-in Fashion-MNIST: the IDX .gz files of the Debian package `dataset-fashion-mnist`, checked and
held in memory."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from lgtool.base.errors import InputError
from lgtool.base.normalization import Normalization
from lgtool.training.data.memory import TensorSplit
from lgtool.training.view import View

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# its own statistics; 28 px images are already whole, so the evaluation transform crops nothing
FASHION_MNIST_NORM = Normalization(mean=[0.2860], std=[0.3530], crop_pct=1.0, interpolation="bilinear")
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


_FASHION_MNIST_FIX = (
    "reinstall with `apt-get install dataset-fashion-mnist` or point --data-dir at matching IDX .gz files"
)


def _idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes with `ndim` dimensions, gzipped; any flaw is an InputError naming the file."""

    def bad(problem):
        return InputError(f"{path}: {problem}; {_FASHION_MNIST_FIX}")

    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise bad(f"truncated or not gzip ({e})") from None
    head = 4 + 4 * ndim
    if raw[:4] != bytes([0, 0, 8, ndim]):
        raise bad(f"bad magic number {raw[:4].hex() or '(empty)'}, expected {bytes([0, 0, 8, ndim]).hex()}")
    if len(raw) < head:
        raise bad(f"truncated header ({len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) - head != math.prod(dims):
        shape, got = "x".join(map(str, dims)), len(raw) - head
        raise bad(f"header says {shape} = {math.prod(dims)} bytes of data but the file has {got}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims).copy())


def _fashion_mnist_split(images: Path, labels: Path) -> TensorSplit:
    x, y = _idx(images, 3), _idx(labels, 1)
    if len(x) != len(y):
        raise InputError(f"{images} has {len(x)} images but {labels} has {len(y)} labels; {_FASHION_MNIST_FIX}")
    if tuple(x.shape[1:]) != (28, 28):
        raise InputError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28; {_FASHION_MNIST_FIX}")
    if len(y) and int(y.max()) >= len(FASHION_MNIST_CLASSES):
        raise InputError(f"{labels}: label {int(y.max())} is not a class (0-9); {_FASHION_MNIST_FIX}")
    return TensorSplit(x.unsqueeze(1), y.long(), FASHION_MNIST_CLASSES)


def fashion_mnist_files(root: Path) -> dict[str, Path]:
    """The four IDX files in `root`, each there (a plan checks this much without reading them)."""
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
    return files


def fashion_mnist(root: Path) -> tuple[TensorSplit, TensorSplit, View]:
    """Fashion-MNIST's train and test splits from the IDX files in `root`, and its view."""
    files = fashion_mnist_files(root)
    train = _fashion_mnist_split(files["train-images-idx3"], files["train-labels-idx1"])
    test = _fashion_mnist_split(files["t10k-images-idx3"], files["t10k-labels-idx1"])
    return train, test, View(28, 1, FASHION_MNIST_NORM)
