"""Images held in memory as uint8 tensors (Fashion-MNIST), augmented on the fly, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lgtool.training import recipe as recipes
from lgtool.training.settings import TrainConfig
from lgtool.training.view import View, batch_generator, epoch_order, global_batches, prepare


@dataclass
class TensorSplit:
    """A split held in memory as uint8 images (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[index], self.labels[index], self.classes)

    def batches(
        self,
        view: View,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
        device="cpu",
        recipe=None,
    ):
        """(images, labels) on `device`, batch `start` onward of pass (`seed`, `epoch`), this rank's share.
        Training batches are augmented as `recipe` (a TrainConfig; default: its defaults) says: --augment,
        then --aa / --color-jitter per image, then --reprob after normalization, all seeded per batch."""
        cfg = recipe or TrainConfig()
        pixels = recipes.tensor_augment(cfg, mean=view.norm.mean) if train else None
        erase = recipes.random_erasing(cfg) if train else None
        order = epoch_order(len(self), seed, epoch, shuffle=train)
        for i, index in enumerate(global_batches(order, batch_size * world, drop_last=train)):
            if i < start:
                continue
            x = self.images[index]
            if train:
                gen = batch_generator(seed, epoch, i)
                x = augment_small(x, gen, cfg.augment)
                x = pixels(x, gen) if pixels else x
            mine = slice(rank, None, world)
            x = prepare(x[mine], view, device)
            if erase is not None:  # per rank: each erases its own share
                x = erase(x, batch_generator(seed + 1 + rank, epoch, i))
            yield x, self.labels[index][mine].to(device, non_blocking=True)


def augment_small(x: torch.Tensor, gen: torch.Generator, mode: str = "flip") -> torch.Tensor:
    """For small in-memory images (uint8): horizontal flip, optionally after a random crop with 2-px padding."""
    n, _, h, w = x.shape
    if mode == "none":
        return x
    if mode == "crop-flip":
        dy, dx = torch.randint(0, 5, (2, n), generator=gen)
        windows = F.pad(x, (2, 2, 2, 2)).unfold(2, h, 1).unfold(3, w, 1)  # (n, C, 5, 5, h, w), a view
        x = windows[torch.arange(n), :, dy, dx]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
