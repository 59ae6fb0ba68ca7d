"""Teacher logits computed once per distinct teacher input.

Distillation runs the teacher on every training image in every epoch, yet with no augmentation, or flips
only, its input repeats: each image comes back as itself or its mirror. `TeacherCache` keys every input by
its content (two independent 64-bit hashes of its float32 bits) and runs the teacher only on inputs it has
not seen, so over E epochs with flips the teacher runs about (2 - 2^(1-E)) times per image instead of E.
Random crops, RandAugment, colour jitter, random erasing and Mixup/CutMix make inputs that never repeat:
there the teacher runs live (`inputs_repeat` says why). The cache is kept in the training checkpoint, so a
resumed run does not recompute it. Memory: one row of logits per distinct input (classes x 4 bytes), up to
`max_bytes` (1 GiB by default); inputs beyond it are run live.
"""

from __future__ import annotations

import torch

from lgtool.training.data import TensorSplit

_WORDS_PER_CHUNK = 1 << 23  # hash at most this many input words at once (64 MB of int64)


def inputs_repeat(cfg, split) -> str | None:
    """None if training inputs can repeat under `cfg` on `split`; else why they never do."""

    if cfg.mixing:
        return "Mixup/CutMix mix every batch anew"
    for name, why in (
        ("aa", "RandAugment/AutoAugment"),
        ("color_jitter", "colour jitter"),
        ("reprob", "random erasing"),
    ):
        if getattr(cfg, name):
            return f"{why} draws new images"
    if cfg.augment == "crop-flip":
        return "random crops draw new images"
    if cfg.augment != "none" and not isinstance(split, TensorSplit):
        return "timm's training transform (random resized crops) draws new images"
    return None


class TeacherCache:
    """Call it like the teacher: logits (float32) for a batch, computed only for inputs not seen before."""

    def __init__(self, teacher: torch.nn.Module, max_bytes: int = 1 << 30):
        self.teacher = teacher
        self.max_bytes = max_bytes
        self.rows: dict[tuple[int, int], int] = {}  # input key -> row of `logits`
        self.logits: torch.Tensor | None = None  # (capacity, classes); the first len(rows) rows are filled
        self.forwards = 0  # images the teacher actually ran on

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        keys = [tuple(k) for k in input_keys(x).tolist()]
        new = {}  # key -> its first position in this batch (an input may repeat within a batch too)
        for i, k in enumerate(keys):
            if k not in self.rows and k not in new:
                new[k] = i
        if new and self.logits is not None and (len(self.rows) + len(new)) * self.logits.shape[1] * 4 > self.max_bytes:
            self.forwards += len(keys)  # full: a batch with unseen inputs runs live
            return self.teacher(x).float()
        if new:
            self._append(list(new), self.teacher(x[list(new.values())]).float())
            self.forwards += len(new)
        return self.logits[torch.tensor([self.rows[k] for k in keys], device=self.logits.device)]

    def _append(self, keys: list, logits: torch.Tensor) -> None:
        n = len(self.rows)
        if self.logits is None or n + len(keys) > len(self.logits):
            grown = torch.empty(max(2 * (n + len(keys)), 1024), logits.shape[1], device=logits.device)
            if self.logits is not None:
                grown[:n] = self.logits[:n]
            self.logits = grown
        self.logits[n : n + len(keys)] = logits
        self.rows.update({k: n + j for j, k in enumerate(keys)})

    def state(self) -> dict:
        """Tensors only (checkpoints are read with weights_only=True): keys (N, 2) int64, logits (N, classes)."""
        n = len(self.rows)
        keys = torch.tensor(list(self.rows), dtype=torch.int64).reshape(n, 2)
        logits = self.logits[:n].cpu() if n else torch.empty(0, 0)
        return {"keys": keys, "logits": logits, "forwards": torch.tensor(self.forwards)}

    def load(self, state: dict) -> None:
        keys, logits = state["keys"], state["logits"]
        if keys.dim() != 2 or keys.shape[1:] != (2,) or len(keys) != len(logits):
            raise ValueError("teacher logits: keys and logits do not pair up")
        self.rows, self.logits = {}, None
        if len(keys):
            device = next(self.teacher.parameters()).device
            self._append([tuple(k) for k in keys.tolist()], logits.to(device, torch.float32))
        self.forwards = int(state["forwards"])


def input_keys(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) int64: per input, two independent hashes of its float32 bits (sums of the 32-bit words times
    fixed random 64-bit weights, wrapping). Equal inputs get equal keys; unequal ones collide with a
    chance of about 2^-128. Computed where `x` lives, so a GPU batch never travels to the host."""
    words = x.detach().float().reshape(len(x), -1).view(torch.int32)
    weights = _weights(words.shape[1], x.device)
    rows = max(1, _WORDS_PER_CHUNK // max(1, words.shape[1]))
    return torch.cat([(words[i : i + rows, None, :].long() * weights).sum(-1) for i in range(0, len(x), rows)])


_cached_weights: dict = {}


def _weights(n: int, device) -> torch.Tensor:
    key = (n, str(device))
    if key not in _cached_weights:
        g = torch.Generator().manual_seed(0x1E4D6E4E)
        _cached_weights[key] = torch.randint(-(2**63), 2**63 - 1, (2, n), generator=g, dtype=torch.int64).to(device)
    return _cached_weights[key]
