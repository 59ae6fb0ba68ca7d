"""The weight-selection baseline: a Desc-Net cut from the ancestor's own weights, then fine-tuned.

Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024) cuts every tensor of the
smaller model from the same-named tensor of a larger pretrained model of the same family. Elements: per
dimension, evenly spaced indices (stride k when the large size is k times the small one, else rounded
linspace over the whole range). Layers: the paper takes the first N blocks; evenly spaced blocks are the
other natural choice (the weight-selection project's issue #4), and past the ancestor's depth blocks repeat,
evenly spaced, as depth-growth methods do. The classifier is kept when the labels match (a practitioner
would not throw away a head that fits); the paper re-initializes it because its task changes.

The bench picks the layer policy on validation; `lgtool expand --ancestor` makes the same start
(`selected_model`), so that recipe.sh rebuilds it.
"""

from __future__ import annotations

from lgtool.base.arch import Arch, build_vit
from lgtool.base.errors import InputError
from lgtool.base.lazy import torch  # lazy: `lgtool expand --help` reads LAYER_POLICIES without torch
from lgtool.baselines.base import start_seed

LAYER_POLICIES = ("first", "spaced")  # the paper's first N blocks; evenly spaced (with repetition past the depth)

DISTILS = False
RACE_ORDER = 10  # the undistilled baselines race first: no teacher forwards, so each budget is cheaper
REFERENCE = False
POLICIES = LAYER_POLICIES


def policies(ancestor, depth: int) -> tuple[str, ...]:
    """The layer policies that give different starts at `depth`; none from an ancestor that is not a ViT."""
    return layer_policies(len(ancestor.blocks), depth) if _is_vit(ancestor) else ()


def start(ancestor, target: Arch, seed: int, policy: str | None):
    """`target` cut from the ancestor by `policy`, as `lgtool expand --ancestor` cuts it; the row records which
    ancestor block each block came from and whether the head was kept."""
    if not _is_vit(ancestor):
        raise InputError("the ancestor is not a ViT: weight selection cuts a ViT's tensors from a ViT's")
    model, done = selected_model(ancestor.state_dict(), target, policy, seed)
    return model, {"layers": done["layers"], "head": done["head"]}


def expand_args(entry: dict, shape: list[str]) -> list[str]:
    policy = [f"--layers {entry['layer_policy']}"] if "layer_policy" in entry else []
    return ['--ancestor "$ANCESTOR"', *shape, *policy]


def evenly_spaced(n: int, m: int) -> torch.Tensor:
    """m of n indices, evenly spaced (m > n repeats indices)."""
    if m <= n and n % m == 0:
        return torch.arange(0, n, n // m)
    return torch.linspace(0, n - 1, m).round().long()


def select(t: torch.Tensor, shape) -> torch.Tensor:
    """Cut `t` down to `shape`, dimension by dimension."""
    if t.dim() != len(shape):
        raise InputError(f"cannot select a {list(shape)} tensor from a {list(t.shape)} one")
    for dim, (n, m) in enumerate(zip(t.shape, shape, strict=True)):
        if n < m:
            raise InputError(f"weight selection needs a wider ancestor: {list(t.shape)} is smaller than {list(shape)}")
        if n != m:
            t = t.index_select(dim, evenly_spaced(n, m))
    return t


def layer_plan(ancestor_depth: int, depth: int, policy: str = "first") -> list[int]:
    """Which ancestor block each of `depth` blocks is cut from. Past the ancestor's depth only evenly spaced
    repetition makes sense, whatever the policy (0,1,1,2,3,3,4,4,5,6,6,7 for 12 from 8)."""
    if policy not in LAYER_POLICIES:
        raise ValueError(f"unknown layer policy {policy!r}: choose from {', '.join(LAYER_POLICIES)}")
    if policy == "first" and depth <= ancestor_depth:
        return list(range(depth))
    return evenly_spaced(ancestor_depth, depth).tolist()


def layer_policies(ancestor_depth: int, depth: int) -> tuple[str, ...]:
    """The policies that give different plans at this depth (one past or at the ancestor's depth)."""
    return LAYER_POLICIES if depth < ancestor_depth else ("spaced",)


def weight_selection(ancestor_state: dict, target: torch.nn.Module, layers: str = "first") -> dict:
    """Initialize `target` (a timm ViT) from a larger ancestor ViT's state dict; returns what was done.

    The head is cut from the ancestor's when both predict the same number of classes, else keeps timm's init."""
    own = target.state_dict()
    depth = _depth(ancestor_state)
    if depth == 0:
        raise InputError("the ancestor has no ViT blocks: weight selection cuts a ViT from a ViT")
    plan = layer_plan(depth, _depth(own), layers)
    same_labels = (
        "head.weight" in ancestor_state and ancestor_state["head.weight"].shape[0] == own["head.weight"].shape[0]
    )
    state = {}
    for key, value in own.items():
        if key.startswith("head.") and not same_labels:
            continue
        source = key
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            source = f"blocks.{plan[int(index)]}.{rest}"
        if source not in ancestor_state:
            raise InputError(f"ancestor has no {source}: weight selection needs the same model family")
        state[key] = select(ancestor_state[source], value.shape).clone()
    target.load_state_dict(state, strict=False)
    return {"layers": plan, "layer_policy": layers, "head": "selected" if same_labels else "fresh"}


def selected_model(ancestor_state: dict, target: Arch, layers: str, seed: int = 0):
    """A timm ViT of `target`'s size cut from the ancestor's state dict, and what `weight_selection` did; what it
    does not cut (a head for other labels) is timm's init, seeded by the size. The one builder of both
    `lgtool expand --ancestor` and the bench's weight-selection rows, so that they cannot drift apart."""
    torch.manual_seed(start_seed(target.depth, target.embed_dim, seed))
    model = build_vit(target)
    return model, weight_selection(ancestor_state, model, layers)


def _is_vit(model) -> bool:
    """A ViT's patch embedding and blocks, what weight selection cuts from (as `lgtool.training.ancestor.is_vit`)."""
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def _depth(state: dict) -> int:
    return 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
