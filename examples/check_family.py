"""Check a family `lgtool bench` handed over with plain timm, no lgtool import: every size loads with
`timm.create_model("local-dir:...")`, and its Fashion-MNIST test top-1 is within a tolerance of family.json's.

    python examples/check_family.py bench/family [--tol 0.005] [--data-dir DIR] [--first N]
"""

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch

try:  # a CUDA torchvision beside a CPU torch (these CI machines) lacks two op schemas; defining them lets its
    import torchvision  # noqa: F401  # Python part import. Done here, not through lgtool, to keep the check lgtool-free.
except RuntimeError:
    for name in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    for op in ("nms", "qnms"):
        torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
import timm  # noqa: E402


def idx(path: Path) -> np.ndarray:
    """An IDX file (Fashion-MNIST's format): a 4-byte magic whose last byte is the rank, then big-endian sizes."""
    raw = gzip.decompress(path.read_bytes())
    rank = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)


def top1(folder: Path, images: np.ndarray, labels: np.ndarray) -> float:
    model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    x = torch.from_numpy(images.copy()).float().div(255).unsqueeze(1)
    x = (x - torch.tensor(cfg["mean"]).view(1, -1, 1, 1)) / torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        predicted = torch.cat([model(b).argmax(1) for b in x.split(500)])
    return (predicted.numpy() == labels).mean().item()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", type=Path)
    ap.add_argument("--tol", type=float, default=0.005)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--first", type=int, default=None, help="only the first N test images (a bench cut to them)")
    args = ap.parse_args()
    images, labels = idx(args.data_dir / "t10k-images-idx3-ubyte.gz"), idx(args.data_dir / "t10k-labels-idx1-ubyte.gz")
    images, labels = images[: args.first], labels[: args.first]
    entries = json.loads((args.family / "family.json").read_text())
    worst = 0.0
    for size, e in entries.items():
        if e["path"] is None:
            print(f"{size}: no model kept")
            continue
        got = top1(args.family / e["path"], images, labels)
        worst = max(worst, abs(got - e["top1"]))
        print(f"{size}: {e['route']}: test top-1 {got:.4f} with plain timm, {e['top1']:.4f} in family.json")
    assert "lgtool" not in sys.modules, "lgtool was imported"
    print(f"largest difference {worst:.4f} (tolerance {args.tol})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
