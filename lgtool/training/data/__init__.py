"""Training data: the built-in Fashion-MNIST (in memory, augmented on the fly) or an ImageFolder (timm's reader).

Both give `Split`s with one method the training loop needs: `batches(...)` -> (images, labels) on a device,
deterministic given (seed, epoch), able to start mid-epoch (for exact resume) and to shard across DDP ranks.
"""

from __future__ import annotations

import gzip
import math
import os
import weakref
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lgtool.format.errors import InputError

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

    def input_cfg(self) -> dict:
        """The normalization a model stores with it (a learngene's `input`, timm's pretrained_cfg)."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_input_cfg(cls, cfg: dict, img_size: int, in_chans: int) -> View:
        """The view an input config describes; missing fields take timm's defaults."""
        return cls(
            img_size,
            in_chans,
            tuple(cfg.get("mean", (0.5,) * in_chans)),
            tuple(cfg.get("std", (0.5,) * in_chans)),
            cfg.get("crop_pct", 0.875),
            cfg.get("interpolation", "bicubic"),
        )


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**64))


def global_batches(order: torch.Tensor, size: int, drop_last: bool) -> list[torch.Tensor]:
    """Batches of `size` indices (over all ranks); each rank then takes every world-th sample of each."""
    stop = len(order) - len(order) % size if drop_last else len(order)
    return [order[i : i + size] for i in range(0, stop, size)]


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """Augmentation randomness of one global batch: independent of rank count and of where a run resumed."""
    return torch.Generator().manual_seed((((seed * 1_000_003) + epoch) * 1_000_003 + batch) % 2**64)  # any seed


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
        recipe=None,
    ):
        """(images, labels) on `device`, batch `start` onward of pass (`seed`, `epoch`), this rank's share.
        Training batches are augmented as `recipe` (a TrainConfig; default: its defaults) says: --augment,
        then --aa / --color-jitter per image, then --reprob after normalization, all seeded per batch."""
        from lgtool.training import recipe as recipes
        from lgtool.training.settings import TrainConfig

        cfg = recipe or TrainConfig()
        pixels = recipes.tensor_augment(cfg, mean=view.mean) if train else None
        erase = recipes.random_erasing(cfg) if train else None
        order = epoch_order(len(self), seed, epoch, shuffle=train)
        for i, index in enumerate(global_batches(order, batch_size * world, drop_last=train)):
            if i < start:
                continue
            x = self.images[index]
            if train:
                gen = batch_generator(seed, epoch, i)
                x = augment_small(x, gen, cfg.augment)
                x = pixels(x, gen) if pixels else x
            mine = slice(rank, None, world)
            x = prepare(x[mine], view, device)
            if erase is not None:  # per rank: each erases its own share
                x = erase(x, batch_generator(seed + 1 + rank, epoch, i))
            yield x, self.labels[index][mine].to(device, non_blocking=True)


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


def usable_workers(requested: int) -> int:
    """Loader processes to start: `requested`, but no more than the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's cpuset, where one is set
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(int(requested), cpus))


@dataclass
class FolderSplit:
    """An ImageFolder split read through timm's dataset and transforms.

    It keeps one DataLoader for training passes and one for evaluation, so that their worker processes persist
    across epochs: a `batches` call with the same transform, worker count and pinning as the last one only
    swaps in its pass's index list; a different one replaces that loader."""

    root: Path
    index: torch.Tensor  # which samples of the folder belong to this split
    classes: list[str]
    workers: int = 4  # loader processes when `batches` gets neither `workers` nor a recipe (which has its own)
    _loaders: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        _OPEN_LOADERS[id(self)] = self._loaders
        weakref.finalize(self, _OPEN_LOADERS.pop, id(self), None).atexit = False

    def __len__(self):
        return len(self.index)

    def subset(self, index: torch.Tensor) -> FolderSplit:
        return FolderSplit(self.root, self.index[index], self.classes, self.workers)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([self._dataset(None).reader.samples[i][1] for i in self.index.tolist()])

    def _dataset(self, transform):
        from lgtool.format.compat import import_timm

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
        recipe=None,
        workers: int | None = None,
        transform=None,
    ):
        """(images, labels) on `device`, batch `start` onward of pass (`seed`, `epoch`), this rank's share.

        Training images go through `recipe.train_transform(recipe, view)` (`recipe`: a TrainConfig; None: its
        defaults; --augment none: the evaluation transform), or through `transform` (a PIL image -> tensor
        callable) when given: pass the same object every epoch to keep the same worker processes.
        `workers`: loader processes; None: `recipe.workers`, else the split's own. Training augmentation is
        seeded per image from (seed, epoch, image): batches do not depend on the worker count, the rank count
        or where a run resumed."""
        workers = usable_workers(getattr(recipe, "workers", self.workers) if workers is None else workers)
        pin = torch.device(device).type == "cuda"
        plain = not train or getattr(recipe, "augment", None) == "none"
        if transform is not None:
            key = ("given", id(transform))
        else:  # the recipe's repr holds every setting, so equal recipes (every epoch's) share a loader
            key = ("timm", plain, None if plain else repr(recipe), repr(view))
        key = (*key, workers, pin)
        cached = self._loaders.get(train)  # one loader per role: a new transform replaces (and stops) the old
        if cached is not None and cached.key == key and not cached.busy:
            loader = cached
        else:
            if transform is None:
                from lgtool.training import recipe as recipes
                from lgtool.training.settings import TrainConfig

                transform = recipes.train_transform(recipe or TrainConfig(), view, train=not plain)
            # busy with this key: another pass over it is still being read, so this one gets a loader of its own
            keep = cached is None or cached.key != key or not cached.busy
            loader = _Loader(key, _CheckedImages(self._dataset(transform)), transform, workers, pin, keep)
            self._loaders[train if keep else ("one-off", id(loader))] = loader
        order = self.index[epoch_order(len(self), seed, epoch, shuffle=train)]
        aug = _pass_key(seed, epoch) if train else None
        loader.sampler.batches = [  # (image, augmentation key) pairs, sent to the workers batch by batch
            [(i, aug) for i in b[rank::world].tolist()]
            for b in global_batches(order, batch_size * world, drop_last=train)[start:]
        ]
        loader.busy = True
        try:
            for batch in loader.loader:
                if isinstance(batch, _Unreadable):  # raised here: an error raised in a worker would come back wrapped
                    raise InputError(f"{batch.path}: not a readable image ({batch.reason}); remove or replace it")
                x, y = batch
                x = x.to(device, non_blocking=True)
                if x.shape[1] != view.in_chans:
                    x = x.mean(1, keepdim=True).expand(-1, view.in_chans, -1, -1)
                yield x, y.to(device, non_blocking=True)
        finally:  # also when the reader stops early (training stops at a whole number of accumulation steps)
            loader.busy = False
            self._loaders.pop(("one-off", id(loader)), None)


# Every split's loaders, by id of the split (dropped when the split is). Held here, outside any reference
# cycle a split may end up in (an exception's traceback, say): when the garbage collector frees a cycle,
# multiprocessing's queues inside it are closed before the DataLoader's own cleanup runs, whose stop signal
# then never reaches the workers, and it waits 5 s on each. From here, loaders are freed in order instead.
_OPEN_LOADERS: dict[int, dict] = {}

PREFETCH_BATCHES = 4  # per worker: enough to hide a slow image without holding many batches in memory


class _PassBatches(torch.utils.data.Sampler):
    """The batch sampler a loader keeps: each pass assigns `batches` before iterating the loader."""

    def __init__(self):
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class _Loader:
    """One DataLoader and its sampler; `busy` while a `batches` generator is reading it. Workers persist
    unless this is a one-off loader (`keep` false), which shuts them down when the pass ends."""

    def __init__(self, key: tuple, dataset, transform, workers: int, pin: bool, keep: bool):
        self.key = key
        self.sampler = _PassBatches()
        self.transform = transform  # held so that a given transform's id (its cache key) is not reused
        self.busy = False
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin,
            persistent_workers=workers > 0 and keep,
            prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            generator=torch.Generator(),  # its seed draws then leave the training process's stream alone
        )


_MASK64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    """splitmix64's finalizer: nearby inputs (consecutive images, epochs) give unrelated seeds."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _pass_key(seed: int, epoch: int) -> int:
    return _mix64(_mix64(seed) ^ epoch)


@dataclass
class _Unreadable:
    """What a loader returns for a batch holding an image PIL cannot decode."""

    path: str
    reason: str


class _CheckedImages(torch.utils.data.Dataset):
    """timm's ImageDataset, except that an undecodable image is reported (timm would silently read the next one).

    An item is a folder index, or (index, pass key) to draw the transform's randomness from a seed of its own."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        from PIL import Image

        i, key = item if isinstance(item, tuple) else (item, None)
        path, target = self.dataset.reader.samples[i]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")  # decodes every pixel, so a truncated file fails here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return _Unreadable(path, " ".join(str(e).split()) or type(e).__name__)
        if key is None:
            return self.dataset.transform(rgb), target
        with seeded(_mix64(key ^ i)):
            return self.dataset.transform(rgb), target


@contextmanager
def seeded(seed: int, cuda_devices=()):
    """Seed the generators timm's and torchvision's transforms draw from (random, numpy, torch; and the CUDA
    generators of `cuda_devices`), then put them back: the training process's own streams must not move."""
    import random

    import numpy as np

    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(cuda_devices), device_type="cuda"):
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed every CUDA device
        for device in cuda_devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


def _collate(items):
    bad = next((item for item in items if isinstance(item, _Unreadable)), None)
    return bad if bad is not None else torch.utils.data.default_collate(items)


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

    def held_out(self, fraction: float, seed: int) -> Data:
        """Training images less a class-balanced `fraction` of them, which becomes the `test` split: every
        choice (rates, warmup, defaults) is made on it, so the real test split is never looked at."""
        held = balanced_subset(self.train.labels, max(self.num_classes, round(len(self.train) * fraction)), seed)
        keep = torch.ones(len(self.train), dtype=torch.bool)
        keep[held] = False
        return Data(self.name, self.train.subset(keep.nonzero().squeeze(1)), self.train.subset(held), self.view)


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


_FASHION_MNIST_FIX = (
    "reinstall with `apt-get install dataset-fashion-mnist` or point --data-dir at matching IDX .gz files"
)


def _idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of unsigned bytes with `ndim` dimensions, gzipped; any flaw is an InputError naming the file."""
    import numpy as np

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


def data_paths(data: str, data_dir=None) -> list:
    """What `load_data(data, data_dir)` reads, for the outputs-are-not-inputs check: the folder or files given,
    and the default Fashion-MNIST folder when that is what `fashion-mnist` means."""
    default = FASHION_MNIST_DIR if data == FASHION_MNIST and data_dir is None else None
    return [data, data_dir, default]


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
    train = _fashion_mnist_split(files["train-images-idx3"], files["train-labels-idx1"])
    test = _fashion_mnist_split(files["t10k-images-idx3"], files["t10k-labels-idx1"])
    mean, std = FASHION_MNIST_STATS
    return Data(FASHION_MNIST, train, test, View(28, 1, mean, std, crop_pct=1.0, interpolation="bilinear"))


def _image_folder(root: Path, seed: int) -> Data:
    from lgtool.format.compat import import_timm

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
        _same_classes(train_dir, val_dir, classes, list(val_ds.reader.class_to_idx))
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


def _same_classes(train_dir: Path, val_dir: Path, train: list[str], val: list[str]) -> None:
    """Labels are indices into the sorted class names, so both folders must name the same classes."""
    for a, b, have, lack in ((val_dir, train_dir, val, train), (train_dir, val_dir, train, val)):
        extra = sorted(set(have) - set(lack))
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise InputError(
                f"{a.parent}: {a.name}/ has class '{extra[0]}'{more} that {b.name}/ lacks; "
                f"give {a.name}/ and {b.name}/ the same class folders"
            )
