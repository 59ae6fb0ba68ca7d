"""Width that keeps what matters: a learngene's channels reordered by importance, its function unchanged.

A rule that makes only its own width (SWS, TLEG) makes a narrower Desc-Net by evenly spaced selection
(`materialize.select`): stride 2 for half the width, 4 for a quarter. `order_learngene` scores every unit a
narrower Desc-Net can lose on a few training images, then permutes the learngene so that the most important units
sit where that selection looks first (positions divisible by the largest power of two): a half-width Desc-Net
then keeps the more important half, a quarter-width one the most important quarter, and so on.

What is scored, with the first-order estimate of the loss change from removing a unit, squared per image and
summed (Molchanov et al. 2019; SKD and DynaBERT rank the same way):
- embedding channels (one permutation for the whole residual stream: patch and position embeddings, every block,
  the final norm and the head);
- MLP hidden neurons, per group of layers sharing tensors (an SWS stage; all of TLEG's layers);
- per head, its query/key dimensions (one permutation for both, so every attention score is unchanged) and its
  value dimensions (with the projection's columns), heads staying where they are.
Permutations commute with LayerNorm, attention and the MLP, so the full-width Desc-Net computes exactly what it
did before (up to float rounding); only which units a narrower one keeps changes.
"""

from __future__ import annotations

from lgtool.base.errors import InputError
from lgtool.base.lazy import torch
from lgtool.family import describe_layers
from lgtool.learngene import Learngene
from lgtool.materialize import expand
from lgtool.rules import RULES

EMBED_SLOTS = ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.proj.bias", "mlp.fc2.bias")
EMBED_NONBLOCK = ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
                  "fc_norm.weight", "fc_norm.bias")  # fmt: skip


def selection_priority(n: int) -> torch.Tensor:
    """Positions 0..n-1 in the order evenly spaced selection keeps them as the width halves: multiples of the
    largest power of two first (at stride s it keeps the multiples of s), then by position."""

    def power_of_two(p: int) -> int:
        return n if p == 0 else p & -p

    return torch.tensor(sorted(range(n), key=lambda p: (-power_of_two(p), p)))


def placed(scores: torch.Tensor) -> torch.Tensor:
    """The permutation (new position -> old unit) putting the highest-scoring unit at the first priority position."""
    ranked = torch.argsort(scores, descending=True, stable=True)
    perm = torch.empty_like(ranked)
    perm[selection_priority(len(scores))] = ranked
    return perm


def per_head(scores: torch.Tensor, heads: int) -> torch.Tensor:
    """One permutation of all heads' dimensions, each head's placed within its own range."""
    dim = len(scores) // heads
    return torch.cat([placed(scores[h * dim : (h + 1) * dim]) + h * dim for h in range(heads)])


def importance(gene: Learngene, data, view, images: int = 1000, batch_size: int = 50, seed: int = 0) -> dict:
    """Per-image squared first-order importance of every prunable unit of `gene`'s Aux-Net, summed over `images`
    training images: {"embed": (C,), "mlp": {group: (H,)}, "qk": {group: (C,)}, "v": {group: (C,)}}."""
    model = expand(gene).train(False)
    groups = _groups(gene)
    width = gene.arch.embed_dim
    per_image: dict = {}  # the current batch's per-image sums, by (kind, group)

    def collect(kind, group, lo=None, hi=None):
        def hook(_module, _inputs, out):
            def grad_hook(g):
                a = out[..., lo:hi] if lo is not None else out
                gg = g[..., lo:hi] if lo is not None else g
                contrib = (gg * a).flatten(1, -2).sum(1) if a.dim() == 3 else gg * a
                key = (kind, group)
                per_image[key] = per_image.get(key, 0) + contrib

            out.register_hook(grad_hook)

        return hook

    handles = [model.pos_drop.register_forward_hook(collect("embed", None))]
    for i, block in enumerate(model.blocks):
        g = groups[i]
        handles += [
            block.attn.register_forward_hook(collect("embed", None)),
            block.mlp.register_forward_hook(collect("embed", None)),
            block.mlp.act.register_forward_hook(collect("mlp", g)),
            block.attn.qkv.register_forward_hook(collect("q", g, 0, width)),
            block.attn.qkv.register_forward_hook(collect("k", g, width, 2 * width)),
            block.attn.qkv.register_forward_hook(collect("v", g, 2 * width, 3 * width)),
        ]
    totals: dict = {}
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(data.train), generator=generator)[:images]
    seen = 0
    try:
        for x, y in data.train.subset(chosen).batches(view, batch_size, train=False):
            per_image.clear()
            loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
            loss.backward()
            merged = dict(per_image)
            for group in set(groups):  # q and k dimensions go together: one gate per pair
                q, k = merged.pop(("q", group), 0), merged.pop(("k", group), 0)
                merged[("qk", group)] = q + k
            for key, contrib in merged.items():
                totals[key] = totals.get(key, 0) + contrib.pow(2).sum(0)
            seen += len(y)
    finally:
        for h in handles:
            h.remove()
    out = {"embed": totals[("embed", None)], "images": seen}
    for kind in ("mlp", "qk", "v"):
        out[kind] = {group: totals[(kind, group)] for group in sorted(set(groups))}
    return out


def _groups(gene: Learngene) -> list[int]:
    """The tensor group of every Aux-Net layer: its stage, for a rule whose block tensors belong to stages (SWS's
    layer plan names each layer's); else 0 for all (TLEG's layers are made of the same tensors)."""
    if any("stage" in role for role in gene.meta.tensors.values()):
        return [int(s) for s in describe_layers(gene, gene.arch)]
    return [0] * gene.arch.depth


def permutations(gene: Learngene, scores: dict) -> dict:
    """The permutations (new position -> old unit) that put the most important units where selection looks first."""
    heads = gene.arch.num_heads
    return {
        "embed": placed(scores["embed"]),
        "mlp": {g: placed(s) for g, s in scores["mlp"].items()},
        "qk": {g: per_head(s, heads) for g, s in scores["qk"].items()},
        "v": {g: per_head(s, heads) for g, s in scores["v"].items()},
    }


def permute(gene: Learngene, perms: dict) -> Learngene:
    """`gene` with every tensor permuted by `perms` (`permutations`); the same function at full width."""
    e = perms["embed"]
    width = gene.arch.embed_dim
    tensors = {}
    for name, t in gene.tensors.items():
        role = gene.meta.tensors.get(name, {})
        slot = role.get("slot")
        if slot is None:
            tensors[name] = _nonblock(name, t, e)
            continue
        group = int(role.get("stage", 0))
        h, qk, v = perms["mlp"][group], perms["qk"][group], perms["v"][group]
        if slot in EMBED_SLOTS:
            t = t[e]
        elif slot in ("attn.qkv.weight", "attn.qkv.bias"):
            rows = torch.cat([qk, qk + width, v + 2 * width])
            t = t[rows][:, e] if t.dim() == 2 else t[rows]
        elif slot == "attn.proj.weight":
            t = t[e][:, v]
        elif slot == "mlp.fc1.weight":
            t = t[h][:, e]
        elif slot == "mlp.fc1.bias":
            t = t[h]
        elif slot == "mlp.fc2.weight":
            t = t[e][:, h]
        else:
            raise InputError(f"cannot order a learngene with a block tensor {slot!r}")
        tensors[name] = t.contiguous()
    meta = gene.meta.model_copy(deep=True)
    return Learngene(meta, tensors)


def _nonblock(name: str, t, e):
    if name in EMBED_NONBLOCK:
        return t[e].contiguous()
    if name in ("pos_embed", "cls_token", "reg_token"):
        return t[..., e].contiguous()
    if name == "head.weight":
        return t[:, e].contiguous()
    if name == "head.bias":
        return t
    raise InputError(f"cannot order a learngene with a tensor {name!r}")


def order_learngene(gene: Learngene, data, view, *, images: int = 1000, seed: int = 0) -> tuple[Learngene, dict]:
    """`gene` reordered by importance on `images` training images of `data` (see the module's docstring), and what
    the ordering spent. Only for a rule that narrows by selection (SWS, TLEG)."""
    if not RULES[gene.method].NARROWS_BY_SELECTION:
        raise InputError(f"a {gene.method.upper()} learngene makes its widths by its own rule: nothing to order")
    scores = importance(gene, data, view, images=images, seed=seed)
    ordered = permute(gene, permutations(gene, scores))
    ordered.meta.provenance.update(ordering={"images": scores["images"], "scored": "first-order, per image"})
    return ordered, {"images": scores["images"]}
