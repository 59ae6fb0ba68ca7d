"""Where this process trains: its rank among torchrun's processes (WORLD_SIZE, LOCAL_RANK) and its device, and
the peak memory it used there."""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's rank, the number of processes (the world) and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else None
        if world <= 1:
            return cls(0, 1, device or torch.device("cpu"))

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device is not None else "gloo")
        if device is not None:
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), world, device or torch.device("cpu"))

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**10 if sys.platform != "darwin" else rss / 2**20
