"""A split's one method the training loop reads, `batches`, and the pass it describes: which samples, in which
order, from which batch, and this rank's share of each. In-memory and ImageFolder splits differ only in how they
turn a pass into images (`Split.read`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Pass:
    """One pass over a split: its order (shuffled from `seed` and `epoch` when training), the batch it starts
    from (an exact resume) and this rank's share of every batch (`rank` of `world`)."""

    train: bool
    seed: int = 0
    epoch: int = 0
    start: int = 0
    rank: int = 0
    world: int = 1

    def batches(self, n: int, batch_size: int) -> list[tuple[int, torch.Tensor]]:
        """(number, sample indices) of every global batch of `batch_size` per rank, batch `start` onward.
        Training drops a last, short batch."""
        order = epoch_order(n, self.seed, self.epoch, shuffle=self.train)
        return list(enumerate(global_batches(order, batch_size * self.world, drop_last=self.train)))[self.start :]

    def share(self, batch):
        """This rank's samples of a global batch (indices, images or labels): every world-th from its rank."""
        return batch[self.rank :: self.world]


class Split:
    """What the training loop reads from a split of data: `batches`. A split implements `read`."""

    def batches(
        self,
        view,
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
        **options,
    ):
        """(images, labels) on `device`, batch `start` onward of pass (`seed`, `epoch`), this rank's share.

        Deterministic given (seed, epoch), augmentation included: batches do not depend on the rank count or
        where a run resumed. Training batches are augmented as `recipe` (a TrainConfig; None: its defaults)
        says. `options`: what a kind of split takes besides (an ImageFolder's `workers`, `transform`)."""
        return self.read(view, batch_size, Pass(train, seed, epoch, start, rank, world), device, recipe, **options)

    def read(self, view, batch_size: int, run: Pass, device, recipe):
        """The batches of pass `run` as `batches` describes them."""
        raise NotImplementedError


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**64))


def global_batches(order: torch.Tensor, size: int, drop_last: bool) -> list[torch.Tensor]:
    """Batches of `size` indices (over all ranks); each rank then takes every world-th sample of each."""
    stop = len(order) - len(order) % size if drop_last else len(order)
    return [order[i : i + size] for i in range(0, stop, size)]
