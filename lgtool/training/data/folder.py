"""An ImageFolder read through timm's dataset and transforms, with loader processes kept across epochs."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from lgtool.base.errors import InputError
from lgtool.base.lazy import timm
from lgtool.base.normalization import Normalization
from lgtool.training import recipe as recipes
from lgtool.training.data.split import Pass, Split
from lgtool.training.settings import TrainConfig
from lgtool.training.view import View, seeded


def usable_workers(requested: int) -> int:
    """Loader processes to start: `requested`, but no more than the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's cpuset, where one is set
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(int(requested), cpus))


@dataclass
class FolderSplit(Split):
    """An ImageFolder split read through timm's dataset and transforms.

    It keeps one DataLoader for training passes and one for evaluation, so that their worker processes persist
    across epochs: a pass with the same transform, worker count and pinning as the last one only swaps in its
    index list; a different one replaces that loader."""

    root: Path
    index: torch.Tensor  # which samples of the folder belong to this split
    classes: list[str]
    workers: int = 4  # loader processes when a pass gets neither `workers` nor a recipe (which has its own)
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
        return timm.data.create_dataset("", root=str(self.root), transform=transform)

    def read(self, view: View, batch_size: int, run: Pass, device, recipe, workers=None, transform=None):
        """Training images go through `recipe.train_transform(recipe, view)` (`recipe`: a TrainConfig; None: its
        defaults; --augment none: the evaluation transform), or through `transform` (a PIL image -> tensor
        callable) when given: pass the same object every epoch to keep the same worker processes.
        `workers`: loader processes; None: `recipe.workers`, else the split's own. Training augmentation is
        seeded per image from (seed, epoch, image), so batches do not depend on the worker count either."""
        loader = self._loader(view, run.train, device, recipe, workers, transform)
        aug = _pass_key(run.seed, run.epoch) if run.train else None
        loader.sampler.batches = [  # (image, augmentation key) pairs, sent to the workers batch by batch
            [(i, aug) for i in run.share(self.index[b]).tolist()] for _, b in run.batches(len(self), batch_size)
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

    def _loader(self, view: View, train: bool, device, recipe, workers, transform) -> _Loader:
        """The loader of this role (training or evaluation) if its transform, worker count and pinning are this
        pass's and no other pass is reading it; else a new one, which replaces it or, while it is busy, is a
        one-off of this pass's own."""
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
            return cached
        if transform is None:
            transform = recipes.train_transform(recipe or TrainConfig(), view, train=not plain)
        # busy with this key: another pass over it is still being read, so this one gets a loader of its own
        keep = cached is None or cached.key != key
        loader = _Loader(key, _CheckedImages(self._dataset(transform)), transform, workers, pin, keep)
        self._loaders[train if keep else ("one-off", id(loader))] = loader
        return loader


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


def _collate(items):
    bad = next((item for item in items if isinstance(item, _Unreadable)), None)
    return bad if bad is not None else torch.utils.data.default_collate(items)


def check_folder(root: Path) -> None:
    """An ImageFolder path that is a folder (a plan checks this much without listing its images)."""
    if not root.is_dir():
        raise InputError(f"data folder {root} not found (give an ImageFolder path or `fashion-mnist`)")


def image_folder(root: Path, seed: int) -> tuple[FolderSplit, FolderSplit, View]:
    """An ImageFolder's train and test splits (its val/ folder, or 10% held out) and timm's ImageNet view."""

    check_folder(root)

    def read(path):
        try:
            return timm.data.create_dataset("", root=str(path))
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
    return train, test, View(224, 3, Normalization())  # timm's ImageNet statistics, its default


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
