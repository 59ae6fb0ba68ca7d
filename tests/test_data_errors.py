"""Bad data is one InputError line that names the file and says how to fix it, never a traceback."""

import gzip

import pytest
import torch

from lgtool.base.errors import InputError
from lgtool.base.normalization import Normalization
from lgtool.training.data import View, load_data

FIX = "apt-get install dataset-fashion-mnist"


def idx_bytes(dims, data: bytes, magic: bytes | None = None) -> bytes:
    head = magic if magic is not None else bytes([0, 0, 8, len(dims)])
    return head + b"".join(d.to_bytes(4, "big") for d in dims) + data


def write_fashion_mnist(root, n_train=6, n_test=3, **override):
    """Four small valid IDX .gz files in `root`; `override` maps a file stem to raw bytes written instead."""
    root.mkdir(exist_ok=True)
    files = {
        "train-images-idx3": idx_bytes([n_train, 28, 28], bytes(n_train * 784)),
        "train-labels-idx1": idx_bytes([n_train], bytes(i % 10 for i in range(n_train))),
        "t10k-images-idx3": idx_bytes([n_test, 28, 28], bytes(n_test * 784)),
        "t10k-labels-idx1": idx_bytes([n_test], bytes(i % 10 for i in range(n_test))),
    }
    for stem, raw in {**files, **override}.items():
        (root / f"{stem}-ubyte.gz").write_bytes(gzip.compress(raw))
    return root


def load_error(root) -> str:
    with pytest.raises(InputError) as e:
        load_data("fashion-mnist", data_dir=str(root))
    message = str(e.value)
    assert "\n" not in message
    return message


def test_valid_files_load(tmp_path):
    data = load_data("fashion-mnist", data_dir=str(write_fashion_mnist(tmp_path / "fm")))
    assert data.train.images.shape == (6, 1, 28, 28) and data.test.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "stem, raw, says",
    [
        ("train-images-idx3", idx_bytes([6, 28, 28], bytes(6 * 784), magic=b"\x00\x00\x08\x01"), "bad magic number"),
        ("t10k-labels-idx1", b"PK\x03\x04 a zip file", "bad magic number"),
        ("train-labels-idx1", b"\x00\x00\x08\x01\x00\x00", "truncated header"),
        ("t10k-images-idx3", idx_bytes([3, 28, 28], bytes(2 * 784)), "= 2352 bytes of data but the file has 1568"),
        ("train-images-idx3", idx_bytes([6, 28, 28], bytes(6 * 784 + 5)), "but the file has 4709"),
        ("train-images-idx3", idx_bytes([6, 32, 32], bytes(6 * 1024)), "expected 28x28"),
        ("train-labels-idx1", idx_bytes([6], bytes([0, 1, 2, 3, 4, 12])), "label 12 is not a class"),
    ],
)
def test_bad_idx_file_names_file_and_fix(tmp_path, stem, raw, says):
    message = load_error(write_fashion_mnist(tmp_path / "fm", **{stem: raw}))
    assert f"{stem}-ubyte.gz" in message and says in message and FIX in message and "--data-dir" in message


def test_truncated_gzip(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm")
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    message = load_error(root)
    assert str(path) in message and "truncated or not gzip" in message and FIX in message


def test_not_gzip(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm")
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(idx_bytes([3, 28, 28], bytes(3 * 784)))  # not compressed
    assert "t10k-images-idx3-ubyte.gz: truncated or not gzip" in load_error(root)


def test_image_and_label_counts_differ(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm", **{"train-labels-idx1": idx_bytes([5], bytes(5))})
    message = load_error(root)
    assert "train-images-idx3-ubyte.gz has 6 images but" in message and "labels-idx1-ubyte.gz has 5 labels" in message
    assert FIX in message


def test_bad_file_through_cli_exits_3_with_one_line(tmp_path, run_cli):
    root = write_fashion_mnist(tmp_path / "fm", **{"train-labels-idx1": idx_bytes([5], bytes(5))})
    code, _, err = run_cli("finetune", "--init", "scratch", "--data-dir", root, "-o", tmp_path / "out")
    assert code == 3 and "has 6 images but" in err and len(err.strip().splitlines()) == 1, err


# ImageFolder


def make_folder(root, classes_by_split, n=3):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, classes in classes_by_split.items():
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 255, (16, 16, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "classes, says",
    [
        ({"train": ["a", "b"], "val": ["a", "x"]}, "val/ has class 'x' that train/ lacks"),
        ({"train": ["a", "b", "c"], "val": ["a", "b"]}, "train/ has class 'c' that val/ lacks"),
        ({"train": ["a", "b"], "validation": ["a", "b", "y", "z"]}, "validation/ has class 'y' (and 1 more)"),
    ],
)
def test_train_and_val_classes_differ(tmp_path, classes, says):
    root = make_folder(tmp_path / "imgs", classes, n=1)
    with pytest.raises(InputError) as e:
        load_data(str(root))
    assert says in str(e.value) and str(root) in str(e.value) and "\n" not in str(e.value)


def damage(path, how: str) -> None:
    raw = path.read_bytes()
    path.write_bytes(b"this is not a png at all" if how == "garbage" else raw[: len(raw) // 2])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_unreadable_image_names_the_file(tmp_path, how, workers):
    root = make_folder(tmp_path / "imgs", {"train": ["a", "b"], "val": ["a", "b"]})
    bad = root / "train" / "b" / "1.png"
    damage(bad, how)
    data = load_data(str(root))
    data.train.workers = workers
    view = View(16, 3, Normalization(mean=[0.5] * 3, std=[0.25] * 3))
    with pytest.raises(InputError) as e:
        for _ in data.train.batches(view, 2, train=True):
            pass
    message = str(e.value)
    assert message.startswith(f"{bad}: not a readable image") and message.endswith("remove or replace it")
    assert "\n" not in message


def test_good_images_still_batch(tmp_path):
    data = load_data(str(make_folder(tmp_path / "imgs", {"train": ["a", "b"], "val": ["a", "b"]})))
    data.test.workers = 0
    batches = list(data.test.batches(View(16, 3, Normalization(mean=[0.5] * 3, std=[0.25] * 3)), 4, train=False))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 0, 1, 1, 1]


def test_unreadable_image_through_cli_exits_3(tmp_path, run_cli):
    root = make_folder(tmp_path / "imgs", {"train": ["a", "b"], "val": ["a", "b"]})
    damage(root / "val" / "a" / "0.png", "truncated")
    args = [
        "--width",
        16,
        "--num-heads",
        1,
        "--depth",
        1,
        "--img-size",
        16,
        "--patch-size",
        8,
        "--epochs",
        1,
        "--batch-size",
        2,
    ]
    code, _, err = run_cli("finetune", "--init", "scratch", "--data", root, *args, "-o", tmp_path / "out")
    assert code == 3 and "0.png: not a readable image" in err and len(err.strip().splitlines()) == 1, err
