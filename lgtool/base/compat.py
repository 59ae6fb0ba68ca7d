"""The one place for environment compatibility: the torchvision import shim and offline defaults.

Inside lgtool, timm is `lgtool.base.lazy.timm`, which calls `import_timm()` on first use; scripts and
tests call `import_timm()` instead of `import timm`. It is a no-op cost on a normal install.
"""

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

# torchvision 0.28.0 from PyPI is a CUDA build; beside the CPU build of torch 2.13 its compiled ops
# cannot load, and its fake-op registration then fails on two missing schemas. Defining those
# schemas lets the pure-Python part of torchvision import, which is all timm needs for a ViT.
_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def ensure_torchvision():
    import torch

    for _ in range(len(_SCHEMAS) + 1):
        try:
            import torchvision

            return torchvision
        except RuntimeError as e:
            m = re.search(r"operator torchvision::(\w+) does not exist", str(e))
            if not m or m.group(1) not in _SCHEMAS:
                raise
            for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
                del sys.modules[k]
            torch.library.define(f"torchvision::{m.group(1)}", _SCHEMAS[m.group(1)])
    raise ImportError("could not import torchvision")


def import_timm():
    """timm, with the torchvision shim applied first, and the submodules lgtool reads as attributes."""
    ensure_torchvision()
    import timm
    import timm.loss  # not imported by `import timm` itself

    return timm


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@contextmanager
def utf8_path(path):
    """`path` under a name that safetensors' loader takes (it refuses a name that is not UTF-8, which timm's
    local-dir loader passes on): such a file or folder is named, while the block runs, by a descriptor of it held
    open (Linux's /proc/self/fd); any other path is given back as it is."""
    path = Path(path)
    try:
        os.fsencode(path).decode("utf-8")
        yield path
        return
    except UnicodeDecodeError:
        if not os.path.isdir("/proc/self/fd"):
            yield path
            return
    fd = os.open(path, os.O_RDONLY)
    try:
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
