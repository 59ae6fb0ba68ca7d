"""The model family: timm VisionTransformer arguments, width names, ancestor aliases, parameter counts.

Everything here but `build_vit` is torch-free, so `inspect` and `--help` stay fast.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from lgtool.errors import InputError

WIDTHS = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
ANCESTOR_ALIASES = {
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "deit_base": "deit_base_patch16_224",
}
# Pretrained ancestors shipped inside the package (lgtool/ancestors/<folder>/, timm hub layout).
SHIPPED_ANCESTORS = {"fmnist-vit": "fmnist-vit128"}
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


class Arch(BaseModel):
    """Stock timm `VisionTransformer` keyword arguments; variants are data, not subclasses."""

    model_config = ConfigDict(extra="forbid")

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = False
    global_pool: str = "avg"
    # Final norm before pooling: makes expansion at the Aux size function-preserving (pitfall P3).
    fc_norm: bool = False
    num_classes: int = 1000

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

    def num_params(self) -> int:
        block = sum(numel(s) for s in self.slot_shapes().values())
        return self.depth * block + sum(numel(s) for s in self.nonblock_shapes().values())

    def timm_name(self) -> str:
        """A stock timm name whose module layout this model has; `model_args` override its sizes."""
        for name, (dim, heads) in WIDTHS.items():
            if (self.embed_dim, self.num_heads) == (dim, heads):
                return f"deit_{name}_patch16_224"
        return "vit_base_patch16_224"

    def model_args(self) -> dict:
        return self.model_dump()


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
    heads = num_heads or max(1, dim // head_dim)
    if dim % heads:
        raise InputError(f"width {dim} is not divisible by {heads} heads")
    return dim, heads


def build_vit(arch: Arch, device=None, **extra):
    """A plain timm VisionTransformer with these arguments (timm's own initialization).

    `extra` takes training-only arguments such as `drop_path_rate`."""
    from lgtool._compat import import_timm

    import_timm()
    import torch
    from timm.models.vision_transformer import VisionTransformer

    with torch.device(device or "cpu"):
        return VisionTransformer(**arch.model_args(), **extra)
