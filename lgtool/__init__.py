"""lgtool: build families of Vision Transformers of many sizes from one compact learngene.

gene = lgtool.init_learngene("tleg", width="tiny")      # or lgtool.load_learngene("gene.safetensors")
aux = lgtool.build_aux(gene)                             # the Aux-Net, trains the templates
model = lgtool.expand(gene, depth=9)                     # a plain timm VisionTransformer
"""

from lgtool.base import __version__ as __version__
from lgtool.base.lazy import lazy

_learngene, _materialize = lazy("lgtool.learngene"), lazy("lgtool.materialize")
_API = {
    "init_learngene": _learngene,
    "load_learngene": _learngene,
    "Learngene": _learngene,
    "build_aux": _materialize,
    "expand": _materialize,
}
__all__ = list(_API)


def __getattr__(name):
    # Lazy, so that `import lgtool` (and the CLI's --help) does not pay for importing torch.
    if name in _API:
        return getattr(_API[name], name)
    raise AttributeError(f"module 'lgtool' has no attribute {name!r}")
