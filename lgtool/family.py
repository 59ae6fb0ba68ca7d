"""Family-aware distillation: one learngene distilled through its rule at several sizes at once.

A learngene's rule defines every size from the same tensors, so its templates can be trained for the whole
family rather than for the Aux-Net alone. Each training step samples a few sizes by the sandwich rule of
slimmable networks (Yu & Huang, 2019): the largest, the smallest and random others; each is materialized
exactly as `expand` makes it, every one is distilled from the same teacher logits, and the loss is their
mean. A rule with size-specific tensors (WAVE's scalers) gets its own for every family size but the Aux
size, stored in the artifact, so `expand` at a trained size needs no calibration. A family of the Aux size
alone is ordinary Aux-Net training, bit for bit.
"""

from __future__ import annotations

from lgtool.format.arch import Arch
from lgtool.format.errors import InputError, UsageError


def parse_sizes(text: str | None, option: str) -> list[int] | None:
    """'2-12' (every integer), '2-12:2' (a step), or '2,4,8' -> a sorted list; None stays None."""
    if text is None:
        return None
    out = set()
    try:
        for part in text.split(","):
            span, _, step = part.strip().partition(":")
            lo, _, hi = span.partition("-")
            lo, hi = int(lo), int(hi or lo)
            out.update(range(lo, hi + 1, int(step or 1)))
    except ValueError:
        raise UsageError(f"{option} takes sizes such as 2-12, 2-12:2 or 2,4,8; got {text!r}") from None
    if not out or min(out) < 1:
        raise UsageError(f"{option} takes positive sizes such as 2-12, 2-12:2 or 2,4,8; got {text!r}")
    return sorted(out)


def size_key(arch: Arch) -> str:
    return f"d{arch.depth}-w{arch.embed_dim}"  # as the bench names sizes


def family_grid(depths: list[int] | None, widths: list[int] | None) -> list[tuple] | None:
    """Every (depth, width) of `depths` x `widths`; None where a list is missing means the Aux one."""
    if depths is None and widths is None:
        return None
    return [(d, w) for w in (widths or [None]) for d in (depths or [None])]


def family_targets(gene, sizes: list[tuple] | None) -> list[Arch]:
    """Every (depth, width) of `sizes` as the Desc-Net `expand` would make it (None: the Aux depth or width),
    cheapest first, the Aux size always a member; a one-line InputError if the rule cannot make one."""
    from lgtool.materialize import target_arch

    targets = []
    for depth, width in sizes or []:
        try:
            targets.append(target_arch(gene, depth=depth, width=width))
        except InputError as e:  # name the family: the rule's own message speaks of expand's --depth
            size = f"depth {depth or gene.arch.depth}, width {width or gene.arch.embed_dim}"
            raise InputError(f"the family cannot hold {size}: {e}") from None
    targets = [a for i, a in enumerate(targets) if a not in targets[:i]]
    if gene.arch not in targets:
        targets.append(gene.arch)
    return sorted(targets, key=lambda a: (a.depth * a.embed_dim**2, a.depth, a.embed_dim))


def makeable(gene, sizes: list[tuple]) -> list[tuple]:
    """The (depth, width) sizes of `sizes` the learngene's rule can make (SWS makes no depth below its
    stage count; SWS and TLEG no width above their own), in their order."""
    out = []
    for size in sizes:
        try:
            family_targets(gene, [size])
            out.append(size)
        except InputError:
            pass
    return out


def with_size_tensors(gene, targets: list[Arch]):
    """`gene` with size-specific tensors of its own (for WAVE: scalers, resampled from the Aux size's as a
    new size starts) for every target but the Aux size, listed in its metadata's `sizes`. A rule without
    size-specific tensors gets `gene` back unchanged."""
    from lgtool.learngene import GeneMeta, Learngene, sized_name, tensor_specs
    from lgtool.rules import RULES

    rules, aux = RULES[gene.method], gene.arch
    own = [a for a in targets if (a.depth, a.embed_dim) != (aux.depth, aux.embed_dim)]
    if not rules.SIZE_SPECIFIC or not own:
        return gene
    tensors = dict(gene.tensors)
    for target in own:
        resized = rules.resize_gene(gene, target)
        for name, role in resized.meta.tensors.items():
            if role.get("template") in rules.SIZE_SPECIFIC:
                tensors[sized_name(target.depth, target.embed_dim, name)] = resized.tensors[name].detach().clone()
    raw = gene.meta.model_dump(by_alias=True)
    meta = GeneMeta.model_validate({**raw, "sizes": [(a.depth, a.embed_dim) for a in own]})
    meta.tensors = {name: role for name, (_, role) in tensor_specs(meta).items()}
    return Learngene(meta, tensors)


def is_aux_only(gene, targets: list[Arch]) -> bool:
    return len(targets) == 1 and targets[0] == gene.arch


def sandwich(count: int, samples: int, generator) -> list[int]:
    """Indices of the sizes one step trains: the largest and the smallest (of a cheapest-first list), and
    `samples - 2` others drawn at random without repeats."""
    import torch

    if count <= samples:
        return list(range(count))
    middle = torch.randperm(count - 2, generator=generator)[: samples - 2] + 1
    return [count - 1, 0, *sorted(middle.tolist())]
