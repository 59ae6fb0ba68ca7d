"""The ImageFolder loader: worker processes that persist across epochs without changing what a pass yields."""

import os

import pytest
import torch

from lgtool.base.normalization import Normalization
from lgtool.training.data import FolderSplit, View, load_data, usable_workers

VIEW = View(16, 3, Normalization(mean=[0.5] * 3, std=[0.25] * 3))
N_PER_CLASS = 10  # 2 classes: 20 images, 18 for training (4 batches of 4 per epoch)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Class folders directly (no train/val): load_data holds out 2 of the 20 images, training keeps 18."""
    from PIL import Image

    root = tmp_path_factory.mktemp("loader") / "imgs"
    g = torch.Generator().manual_seed(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            size = 20 + 4 * (i % 4)  # mixed sizes, all resized to the view's 16 px
            pixels = torch.randint(0, 255, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def train_split(folder, workers: int) -> FolderSplit:
    split = load_data(str(folder)).train
    split.workers = workers
    return split


def read(split, **kw):
    """A pass as (images, labels) lists; labels alone identify the order only up to class, so keep pixels."""
    kw = {"train": True, "seed": 3, "epoch": 1, **kw}
    batches = list(split.batches(VIEW, kw.pop("batch_size", 4), **kw))
    return [x for x, _ in batches], [y for _, y in batches]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_same_pass_with_and_without_workers(folder):
    x0, y0 = read(train_split(folder, 0))
    x2, y2 = read(train_split(folder, 2))
    assert len(x0) == 4 and all(x.shape == (4, 3, 16, 16) for x in x0)  # 18 images, the last 2 dropped
    assert same(y0, y2) and same(x0, x2)  # augmentation too: each image is seeded from (seed, epoch, image)
    again = read(train_split(folder, 0))
    assert same(x0, again[0])
    other = read(train_split(folder, 0), seed=4)
    assert not same(x0, other[0])


def test_evaluation_pass_keeps_order_and_every_image(folder):
    split = load_data(str(folder)).train
    x0, y0 = read(split, train=False, workers=0, batch_size=5)
    x2, y2 = read(split, train=False, workers=2, batch_size=5)
    assert [len(y) for y in y0] == [5, 5, 5, 3] and same(x0, x2) and same(y0, y2)
    assert torch.cat(y0).tolist() == split.labels.tolist()  # folder order, nothing dropped


@pytest.mark.parametrize("workers", [0, 2])
def test_start_yields_the_tail_of_the_epoch(folder, workers):
    split = train_split(folder, workers)
    x, y = read(split)
    tail_x, tail_y = read(split, start=2)
    assert same(tail_x, x[2:]) and same(tail_y, y[2:])


def test_persistent_loader_gives_the_orders_of_fresh_loaders(folder):
    fresh = [read(train_split(folder, 2), epoch=e) for e in (0, 1)]
    assert not same(fresh[0][0], fresh[1][0])
    split = train_split(folder, 2)
    kept = [read(split, epoch=e) for e in (0, 1)]
    loader = split._loaders[True].loader
    assert loader.persistent_workers and loader.num_workers == 2 and loader.prefetch_factor == 4
    assert all(same(k[0], f[0]) and same(k[1], f[1]) for k, f in zip(kept, fresh, strict=True))
    assert split._loaders[True].loader is loader  # the second epoch reused it (and its worker processes)


def test_a_pass_left_unfinished_does_not_leak_into_the_next(folder):
    split = train_split(folder, 2)
    full = read(split, epoch=1)
    loader = split._loaders[True].loader
    for i, _ in enumerate(split.batches(VIEW, 4, train=True, seed=3, epoch=0)):
        if i == 1:
            break  # the loader still has batches of epoch 0 in flight
    assert same(read(split, epoch=1)[0], full[0]) and split._loaders[True].loader is loader


def test_two_passes_read_at_once_stay_apart(folder):
    split = train_split(folder, 2)
    a = split.batches(VIEW, 4, train=True, seed=3, epoch=0)
    first = next(a)
    b = read(split, epoch=1)  # the kept loader is busy with `a`: this pass gets a one-off loader
    rest = list(a)
    assert same([first[0], *[x for x, _ in rest]], read(split, epoch=0)[0])
    assert same(b[0], read(split, epoch=1)[0])


def test_ranks_shard_each_global_batch(folder):
    split = train_split(folder, 0)
    _, whole = read(split, batch_size=4)
    ranks = [read(split, batch_size=2, rank=r, world=2)[1] for r in (0, 1)]
    for i, batch in enumerate(whole):
        assert torch.equal(ranks[0][i], batch[0::2]) and torch.equal(ranks[1][i], batch[1::2])
    x_whole, _ = read(split, batch_size=4)
    x_rank1, _ = read(split, batch_size=2, rank=1, world=2)
    assert same(x_rank1, [x[1::2] for x in x_whole])  # augmentation does not depend on the rank count


def test_workers_are_capped_at_the_cpus():
    cpus = os.cpu_count()
    assert usable_workers(10_000) <= cpus and usable_workers(10_000) >= 1
    assert usable_workers(0) == 0 and usable_workers(1) == 1


def test_more_workers_than_cpus_still_loads(folder, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    split = train_split(folder, 64)
    _, y = read(split)
    assert split._loaders[True].loader.num_workers == 1 and len(y) == 4


def test_given_transform_replaces_timm_and_is_kept_across_epochs(folder):
    calls = []

    def transform(img):
        calls.append(img.size)
        return torch.full((3, 16, 16), float(img.size[0]))

    split = train_split(folder, 0)
    for epoch in (0, 1):
        x, _ = read(split, epoch=epoch, transform=transform)
        assert all(v in (20.0, 24.0, 28.0, 32.0) for v in torch.cat(x).flatten().unique().tolist())
    assert len(calls) == 32 and split._loaders[True].transform is transform
    x, _ = read(split)  # back to timm's transform: the loader is replaced
    assert split._loaders[True].transform is not transform and torch.cat(x).min() < 0


def test_eval_and_train_loaders_coexist(folder):
    data = load_data(str(folder))
    data.train.workers = 2
    train = data.train.batches(VIEW, 4, train=True)
    next(train)
    x, _ = read(data.train, train=False, batch_size=8)  # evaluation of the same split mid-epoch
    assert sum(len(b) for b in x) == 18 and len(list(train)) == 3
    assert set(data.train._loaders) == {True, False}


def test_loading_leaves_the_training_random_streams_alone(folder):
    import random

    def draws():
        return torch.rand(3).tolist(), random.random()

    split = train_split(folder, 0)  # the transforms run in this process
    torch.manual_seed(5)
    random.seed(5)
    expected = draws()
    torch.manual_seed(5)
    random.seed(5)
    read(split)
    assert draws() == expected  # drop path and the like see the same numbers with or without loading


def test_a_split_freed_in_a_reference_cycle_stops_its_workers_at_once(folder):
    import gc
    import time

    split = train_split(folder, 2)
    read(split)
    workers = split._loaders[True].loader._iterator._workers
    assert all(w.is_alive() for w in workers)
    cycle = [split]
    cycle.append(cycle)  # as a traceback kept by whoever caught an error would hold it
    del split, cycle
    t = time.perf_counter()
    gc.collect()
    assert time.perf_counter() - t < 2.5  # DataLoader waits 5 s per worker when its queues close first
    assert not any(w.is_alive() for w in workers)


def test_recipe_sets_workers_and_transform_and_is_kept_across_epochs(folder):
    from lgtool.training.settings import TrainConfig

    split = train_split(folder, 0)
    cfg = TrainConfig(workers=2)
    a = read(split, epoch=0, recipe=cfg)
    loader = split._loaders[True].loader
    assert loader.num_workers == 2 and loader.persistent_workers
    b = read(split, epoch=1, recipe=TrainConfig(workers=2))  # an equal recipe: the same loader
    assert split._loaders[True].loader is loader and not same(a[0], b[0])
    assert same(read(split, epoch=0, recipe=cfg, workers=0)[0], a[0])  # `workers` overrides the recipe's
    assert same(read(train_split(folder, 0), epoch=0)[0], a[0])  # no recipe: TrainConfig's defaults


def test_augment_none_trains_on_the_evaluation_transform(folder):
    from lgtool.training.settings import TrainConfig

    split = load_data(str(folder)).train
    plain = TrainConfig(augment="none", workers=0)
    (evaluated,), _ = read(split, train=False, batch_size=18)
    trained = torch.cat(read(split, epoch=0, recipe=plain)[0] + read(split, epoch=1, recipe=plain)[0])
    assert len(trained) == 32 and all(any(torch.equal(img, e) for e in evaluated) for img in trained)
