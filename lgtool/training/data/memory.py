"""Images held in memory as uint8 tensors (Fashion-MNIST), augmented on the fly, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lgtool.training import recipe as recipes
from lgtool.training.data.split import Pass, Split
from lgtool.training.settings import TrainConfig
from lgtool.training.view import View, batch_generator, prepare


@dataclass
class TensorSplit(Split):
    """A split held in memory as uint8 images (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[index], self.labels[index], self.classes)

    def read(self, view: View, batch_size: int, run: Pass, device, recipe):
        """Training batches are augmented as `recipe` (a TrainConfig; None: its defaults) says: --augment, then
        --aa / --color-jitter per image, all drawn per global batch, then --reprob after normalization, per rank."""
        cfg = recipe or TrainConfig()
        pixels = recipes.tensor_augment(cfg, mean=view.norm.mean) if run.train else None
        erase = recipes.random_erasing(cfg) if run.train else None
        for i, index in run.batches(len(self), batch_size):
            x = self.images[index]
            if run.train:
                gen = batch_generator(run.seed, run.epoch, i)
                x = augment_small(x, gen, cfg.augment)
                x = pixels(x, gen) if pixels else x
            x = prepare(run.share(x), view, device)
            if erase is not None:  # per rank: each erases its own share
                x = erase(x, batch_generator(run.seed + 1 + run.rank, run.epoch, i))
            yield x, run.share(self.labels[index]).to(device, non_blocking=True)


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
