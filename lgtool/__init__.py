"""lgtool: build families of Vision Transformers of many sizes from one compact learngene.

gene = lgtool.init_learngene("tleg", width="tiny")      # or lgtool.load_learngene("gene.safetensors")
aux = lgtool.build_aux(gene)                             # the Aux-Net, trains the templates
model = lgtool.expand(gene, depth=9)                     # a plain timm VisionTransformer
"""

import importlib

from lgtool.format import __version__

_API = {
    "init_learngene": "lgtool.learngene",
    "load_learngene": "lgtool.learngene",
    "Learngene": "lgtool.learngene",
    "build_aux": "lgtool.materialize",
    "expand": "lgtool.materialize",
}
__all__ = list(_API)


def __getattr__(name):
    # Lazy, so that `import lgtool` (and the CLI's --help) does not pay for importing torch.
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lgtool' has no attribute {name!r}")
