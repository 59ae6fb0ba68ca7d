"""How images reach a model: the `View` (size, channels, normalization), `prepare` to it, each batch's own
generator, and `seeded` for the transforms that draw from the global generators."""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lgtool.base.normalization import Normalization


@dataclass
class View:
    """How a model wants its images: size and channels, and their normalization."""

    img_size: int
    in_chans: int
    norm: Normalization

    @classmethod
    def from_input_cfg(cls, cfg: Mapping, img_size: int, in_chans: int) -> View:
        """The view a stored input config describes (a learngene's `input`, a timm pretrained_cfg); a mean or
        std it does not state is timm's ViT default, 0.5 per channel."""
        return cls(img_size, in_chans, Normalization.from_pretrained_cfg(cfg, Normalization.plain(in_chans)))


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """Augmentation randomness of one global batch: independent of rank count and of where a run resumed."""
    return torch.Generator().manual_seed((((seed * 1_000_003) + epoch) * 1_000_003 + batch) % 2**64)  # any seed


def prepare(x: torch.Tensor, view: View, device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalized float at the view's size and channel count."""
    x = x.to(device, non_blocking=True).float().div_(255)
    if x.shape[1] != view.in_chans:
        x = x.mean(1, keepdim=True).expand(-1, view.in_chans, -1, -1)
    if x.shape[-1] != view.img_size:
        x = F.interpolate(x, size=(view.img_size, view.img_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(view.norm.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(view.norm.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


@contextmanager
def seeded(seed: int, cuda_devices=()):
    """Seed the generators timm's and torchvision's transforms draw from (random, numpy, torch; and the CUDA
    generators of `cuda_devices`), then put them back: the training process's own streams must not move."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(cuda_devices), device_type="cuda"):
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed every CUDA device
        for device in cuda_devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
