"""The model family: timm VisionTransformer arguments, width names, ancestor aliases, parameter counts.

Torch-free: `build_vit` reaches timm through `lgtool.base.lazy`, so `inspect` and `--help` stay fast.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lgtool.base.errors import InputError, UsageError
from lgtool.base.lazy import timm, torch

WIDTHS = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
ANCESTOR_ALIASES = {
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "deit_base": "deit_base_patch16_224",
}
# Pretrained ancestors shipped inside the package (lgtool/ancestors/<folder>/, timm hub layout).
SHIPPED_ANCESTORS = {"fmnist-vit": "fmnist-vit128", "fmnist-cnn": "fmnist-resnet"}
HEAD_DIM = 64

# The 12 tensors of a pre-norm ViT block, in timm's names. Every rule acts on these slot-wise.
SLOTS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)


# Upper bounds on what an architecture may claim. Far above any real ViT (ViT-22B: width 6144, depth 48;
# ImageNet-21k: 21,843 classes), low enough that a crafted header cannot claim sizes whose bookkeeping
# alone (a loop over the depth, a list of layers) would hang or exhaust memory.
MAX_IMG_SIZE = 16384
MAX_IN_CHANS = 4096
MAX_EMBED_DIM = 65536
MAX_DEPTH = 1000
MAX_NUM_CLASSES = 1_000_000
MAX_MLP_RATIO = 64.0
# timm's VisionTransformer also knows "map" and "prr", but those add attention-pool parameters that a
# learngene and lgtool's tensor layout do not describe, so they are refused here.
GLOBAL_POOLS = ("", "avg", "avgmax", "max", "token")


def _count(lo: int, hi: int):
    """An integer in [lo, hi]; strict, so JSON `true`, `4.0` or `"4"` are refused rather than coerced. These
    `Field` bounds check what a file says (a learngene's or config.json's arch), not flags: a flag's range is its
    `setting()` (`lgtool.base.settings`)."""
    return Annotated[int, Field(strict=True, ge=lo, le=hi)]


StrictBool = Annotated[bool, Field(strict=True)]


class ArchError(InputError, ValueError):
    """An Arch built with invalid arguments: a one-line InputError (exit 3) that is also a ValueError.

    `error` is pydantic's first error, kept so that an Arch inside another model reports as `arch.depth: ...`."""

    def __init__(self, error: dict):
        self.error = error
        super().__init__(f"invalid architecture: {_describe(error)}")


class Arch(BaseModel):
    """Stock timm `VisionTransformer` keyword arguments; variants are data, not subclasses.

    Every field is checked against its range and the relations timm relies on (the patch divides the
    image, the heads divide the width), so no user of an Arch sees an absurd or inconsistent one.
    `Arch(...)` raises `ArchError`; validation as part of another model (`GeneMeta`) raises pydantic's
    `ValidationError` as usual. `model_copy(update=...)` does not validate: use `Arch.checked`."""

    model_config = ConfigDict(extra="forbid")

    img_size: _count(1, MAX_IMG_SIZE) = 224
    patch_size: _count(1, MAX_IMG_SIZE) = 16
    in_chans: _count(1, MAX_IN_CHANS) = 3
    embed_dim: _count(1, MAX_EMBED_DIM) = 192
    depth: _count(1, MAX_DEPTH) = 12
    num_heads: _count(1, MAX_EMBED_DIM) = 3
    mlp_ratio: Annotated[float, Field(strict=True, gt=0, le=MAX_MLP_RATIO, allow_inf_nan=False)] = 4.0
    qkv_bias: StrictBool = True
    class_token: StrictBool = False
    global_pool: Annotated[str, Field(strict=True)] = "avg"
    # Final norm before pooling: makes expansion at the Aux size function-preserving (pitfall P3).
    fc_norm: StrictBool = False
    num_classes: _count(0, MAX_NUM_CLASSES) = 1000  # 0: no head

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ArchError(_innermost(e.errors()[0])) from None

    @model_validator(mode="after")
    def _relations(self):
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}")
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool {self.global_pool!r} is not one of {', '.join(map(repr, GLOBAL_POOLS))}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool 'token' needs class_token true")
        if self.mlp_hidden < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio} leaves no MLP hidden units at embed_dim {self.embed_dim}")
        return self

    @classmethod
    def checked(cls, base: Arch, **update) -> Arch:
        """`base` with some fields changed, validated (unlike `model_copy(update=...)`)."""
        return cls(**{**base.model_dump(), **update})

    def resized(self, depth: int, width: int) -> Arch:
        """This architecture at another depth and width, validated: the head dim kept (the head count where the
        width is unchanged), as `target_arch` makes a width a rule makes itself."""
        heads = self.num_heads if width == self.embed_dim else max(1, width // self.head_dim)
        return Arch.checked(self, depth=depth, embed_dim=width, num_heads=heads)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def slot_shapes(self) -> dict[str, tuple[int, ...]]:
        d, h = self.embed_dim, self.mlp_hidden
        shapes = {
            "norm1.weight": (d,),
            "norm1.bias": (d,),
            "attn.qkv.weight": (3 * d, d),
            "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d),
            "attn.proj.bias": (d,),
            "norm2.weight": (d,),
            "norm2.bias": (d,),
            "mlp.fc1.weight": (h, d),
            "mlp.fc1.bias": (h,),
            "mlp.fc2.weight": (d, h),
            "mlp.fc2.bias": (d,),
        }
        if not self.qkv_bias:
            del shapes["attn.qkv.bias"]
        return shapes

    def nonblock_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensors outside the blocks, keyed by their timm names."""
        d, p = self.embed_dim, self.patch_size
        norm = "fc_norm" if self.fc_norm else "norm"
        shapes = {
            "patch_embed.proj.weight": (d, self.in_chans, p, p),
            "patch_embed.proj.bias": (d,),
            "pos_embed": (1, self.num_patches + int(self.class_token), d),
            f"{norm}.weight": (d,),
            f"{norm}.bias": (d,),
        }
        if self.class_token:
            shapes["cls_token"] = (1, 1, d)
        if self.num_classes > 0:
            shapes["head.weight"] = (self.num_classes, d)
            shapes["head.bias"] = (self.num_classes,)
        return shapes

    def block_params(self) -> int:
        return sum(numel(s) for s in self.slot_shapes().values())

    def num_params(self) -> int:
        return self.depth * self.block_params() + sum(numel(s) for s in self.nonblock_shapes().values())

    def family_params(self, min_depth: int, max_depth: int) -> int:
        """Parameters of the nets of every depth in min_depth..max_depth together (closed form: no loop)."""
        n = max(0, max_depth - min_depth + 1)
        nonblock = self.num_params() - self.depth * self.block_params()
        return self.block_params() * n * (min_depth + max_depth) // 2 + n * nonblock

    def timm_name(self) -> str:
        """A stock timm name whose module layout this model has; `model_args` override its sizes."""
        for name, (dim, heads) in WIDTHS.items():
            if (self.embed_dim, self.num_heads) == (dim, heads):
                return f"deit_{name}_patch16_224"
        return "vit_base_patch16_224"

    def model_args(self) -> dict:
        return self.model_dump()


def first_error(e: ValidationError) -> str:
    """The first error of a pydantic ValidationError as one line: `where: what`."""
    return _describe(_innermost(e.errors()[0]))


def _innermost(err: dict) -> dict:
    """An Arch nested in a model fails as one value error at `arch`: reach through to the field inside."""
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, ArchError):
        return {**inner.error, "loc": (*err["loc"], *inner.error["loc"])}
    return err


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return one_line(f"{where}: {msg}" if where else msg)


def one_line(text: str) -> str:
    """`text` with control characters escaped, so that a name read from a file cannot break an error line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def parse_width(width: str | int, num_heads: int | None = None, head_dim: int = HEAD_DIM) -> tuple[int, int]:
    """`tiny`/`small`/`base` or an integer width -> (embed_dim, num_heads)."""
    if isinstance(width, str) and width in WIDTHS:
        dim, heads = WIDTHS[width]
        return dim, num_heads or heads
    try:
        dim = int(width)
    except (TypeError, ValueError):
        raise InputError(f"unknown width {width!r}: use tiny, small, base or an integer") from None
    if dim <= 0:
        raise InputError(f"width must be positive, got {dim}")
    if dim > MAX_EMBED_DIM:
        raise InputError(f"width {dim} is more than lgtool builds (at most {MAX_EMBED_DIM})")
    heads = num_heads or max(1, dim // head_dim)
    if dim % heads:
        raise InputError(f"width {dim} is not divisible by {heads} heads")
    return dim, heads


def check_size_options(width=None, num_heads=None, img_size=None, patch_size=None) -> None:
    """Architecture options as typed, checked before any data is read: a bad one is a usage error (exit 2). Each
    number's own range is its setting's (`setting(lo=1, limit=MAX_...)`); here are the width's spelling, which
    is text (tiny, small, base or an integer), and what relates the options: the heads divide the width, the
    patch divides the image."""
    try:
        if width is not None:
            parse_width(width, num_heads)
    except InputError as e:
        raise UsageError(str(e)) from None
    if img_size and patch_size and img_size % patch_size:
        raise UsageError(f"--patch-size {patch_size} does not divide --img-size {img_size}")


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(
    arch: Arch, what: str, copies: int = 3, extra: int = 0, hint: str = "choose a smaller --depth or --width"
) -> None:
    """One-line InputError when `copies` float32 copies of the model (its weights and what building, training or
    saving them holds at once) and `extra` bytes (e.g. activations) would not fit in the memory available now: a
    size that cannot fit is refused before any work, rather than the run being killed by the kernel halfway."""
    need, free = arch.num_params() * 4 * copies + extra, available_memory()
    if free is not None and need > free:
        raise InputError(
            f"{what}: a model of {arch.num_params():,} parameters needs about {memory_text(need)}, more than the "
            f"{memory_text(free)} of memory available; {hint}"
        )


def memory_text(n: int) -> str:
    """Bytes as a reader compares them: GiB from a tenth of one, MiB below."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


def forward_bytes(arch: Arch, batch: int) -> int:
    """What one no-grad forward of `batch` images holds at its peak: the input and, in a block, the residual
    stream, qkv, the attention output and the MLP's hidden activations (float32). timm's fused attention never
    holds the tokens x tokens scores, so they are not counted."""
    tokens = arch.num_patches + int(arch.class_token)
    image = arch.in_chans * arch.img_size**2
    return 4 * batch * (image + tokens * (6 * arch.embed_dim + arch.mlp_hidden))


def train_bytes(arch: Arch, batch: int) -> int:
    """What one training step's backward keeps of `batch` images: in each block, the inputs and outputs of its
    four matrices and two norms, 12 x width + 2 x MLP width floats a token (20 x width at MLP ratio 4; the peak
    of one AdamW step of timm's ViT on CPU measured 19.0 to 19.8 x width; the attention scores are never kept),
    and the input twice."""
    tokens = arch.num_patches + int(arch.class_token)
    image = arch.in_chans * arch.img_size**2
    per_block = tokens * (12 * arch.embed_dim + 2 * arch.mlp_hidden)
    return 4 * batch * (2 * image + arch.depth * per_block)


def training_bytes(arch: Arch, batch: int, copies: int = 4) -> int:
    """What training `arch` at `batch` images a step holds: `copies` of its weights and what the backward keeps."""
    return 4 * copies * arch.num_params() + train_bytes(arch, batch)


def check_training_memory(arch: Arch, what: str, batch: int, copies: int = 4, hint: str = "") -> None:
    """One-line InputError, before any training, when training `arch` on the CPU at `batch` images a step would not
    fit in the memory available now: `copies` of its weights (weights, gradients and AdamW's two moments, when all
    are trained and none is loaded yet) and what the backward keeps, for each of torchrun's processes on this
    machine; the line ends with `hint` (default: a smaller --batch-size). On a GPU these live in its memory: not
    checked here."""
    if torch.cuda.is_available():
        return
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    kept = train_bytes(arch, batch)
    hint = hint or f"use a smaller --batch-size than {batch} (its backward keeps {memory_text(kept)}) or a smaller size"
    check_memory(arch, what, copies=copies * procs, extra=kept * procs, hint=hint)


def default_patch_size(img_size: int) -> int:
    """16 for ImageNet-sized inputs; for small images, a 4 x 4 grid of patches (28 px -> 7)."""
    return 16 if img_size >= 112 else max(1, img_size // 4)


def build_vit(arch: Arch, device=None, **extra):
    """A plain timm VisionTransformer with these arguments (timm's own initialization).

    `extra` takes training-only arguments such as `drop_path_rate`."""
    with torch.device(device or "cpu"):
        return timm.models.vision_transformer.VisionTransformer(**arch.model_args(), **extra)
