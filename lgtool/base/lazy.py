"""Heavy libraries on first use: the one mechanism that keeps `import lgtool`, `inspect` and every `--help`
free of torch.

A module that must stay cheap to import names what it needs at its top, `torch = lazy("torch")`, and the
import happens at the first attribute it reads (`torch.zeros(...)`), inside whichever function runs. The
layering test (tests/test_layers.py) reads `lazy("lgtool....")` as an import, so a lazy import can no more
run upward, or in a circle, than a plain one.
"""

from __future__ import annotations

import importlib

from lgtool.base.compat import import_timm
from lgtool.base.interrupt import raise_if_terminated


class LazyModule:
    """A module imported when one of its attributes is first read."""

    __slots__ = ("_name", "_load", "_module")

    def __init__(self, name: str, load=None):
        self._name = name
        self._load = load or (lambda: importlib.import_module(name))
        self._module = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = self._load()
            raise_if_terminated()  # a SIGINT or SIGTERM during the import is raised here, after it
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (loaded)'}>"


def lazy(name: str) -> LazyModule:
    """`name`, imported on first use."""
    return LazyModule(name)


torch = lazy("torch")
# timm only through the torchvision shim: the one call of `import_timm` in lgtool.
timm = LazyModule("timm", import_timm)
