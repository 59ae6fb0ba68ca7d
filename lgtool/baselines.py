"""Initializations a learngene is compared against: timm's random init (scratch) and weight selection.

Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): every tensor of the
smaller model, except the classifier head, is cut from the same-named tensor of a larger pretrained
model of the same family. Layers: the first N blocks. Elements: per dimension, evenly spaced indices
(stride k when the large size is k times the small one, else rounded linspace over the whole range).
"""

from __future__ import annotations

import torch

from lgtool.errors import InputError


def evenly_spaced(n: int, m: int) -> torch.Tensor:
    """m of n indices, evenly spaced."""
    if n % m == 0:
        return torch.arange(0, n, n // m)
    return torch.linspace(0, n - 1, m).round().long()


def select(t: torch.Tensor, shape) -> torch.Tensor:
    """Cut `t` down to `shape`, dimension by dimension."""
    if t.dim() != len(shape):
        raise InputError(f"cannot select a {list(shape)} tensor from a {list(t.shape)} one")
    for dim, (n, m) in enumerate(zip(t.shape, shape, strict=True)):
        if n < m:
            raise InputError(f"weight selection needs a larger ancestor: {list(t.shape)} is smaller than {list(shape)}")
        if n != m:
            t = t.index_select(dim, evenly_spaced(n, m))
    return t


def weight_selection(ancestor_state: dict, target: torch.nn.Module) -> torch.nn.Module:
    """Initialize `target` (a timm ViT) from a larger ancestor's state dict; the head keeps timm's init."""
    own = target.state_dict()
    depth = 1 + max((int(k.split(".")[1]) for k in ancestor_state if k.startswith("blocks.")), default=-1)
    needed = 1 + max((int(k.split(".")[1]) for k in own if k.startswith("blocks.")), default=-1)
    if needed > depth:
        raise InputError(f"ancestor too small for weight selection: it has {depth} blocks, the target needs {needed}")
    state = {}
    for key, value in own.items():
        if key.startswith("head."):
            continue
        if key not in ancestor_state:
            raise InputError(f"ancestor has no {key}: weight selection needs the same model family")
        state[key] = select(ancestor_state[key], value.shape).clone()
    target.load_state_dict(state, strict=False)
    return target
