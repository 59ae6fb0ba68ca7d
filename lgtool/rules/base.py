"""What every rule shares: timm's fresh block tensors, and where a size's own tensors are stored."""

from lgtool.format.lazy import torch


def sized_name(depth: int, width: int, name: str) -> str:
    """Where the size-specific tensor `name` of one trained size is stored."""
    return f"sized.d{depth}w{width}.{name}"


def fresh_slot(slot: str, shape, generator=None):
    """timm's ViT initialization of one block tensor: trunc-normal(0.02) weights, zero biases, LN (1, 0)."""
    if slot.startswith("norm") and slot.endswith(".weight"):
        return torch.ones(shape)
    if slot.endswith(".bias"):
        return torch.zeros(shape)
    return torch.nn.init.trunc_normal_(torch.empty(shape), std=0.02, generator=generator)
