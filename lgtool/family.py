"""The sizes a learngene makes: `target_arch` (one requested size, checked), and family-aware distillation.

`target_arch` works out a Desc-Net's architecture once per command, torch-free; everything after takes the
`Arch` it returns. Family-aware distillation trains one learngene through its rule at several sizes at once.

A learngene's rule defines every size from the same tensors, so its templates can be trained for the whole
family rather than for the Aux-Net alone. Each training step samples a few sizes by the sandwich rule of
slimmable networks (Yu & Huang, 2019): the largest, the smallest and random others; each is materialized
exactly as `expand` makes it, every one is distilled from the same teacher logits, and the loss is their
mean. A rule with size-specific tensors (WAVE's scalers) gets its own for every family size but the Aux
size, stored in the artifact, so `expand` at a trained size needs no calibration. A family of the Aux size
alone is ordinary Aux-Net training, bit for bit.
"""

from __future__ import annotations

from lgtool.base.arch import Arch, parse_width
from lgtool.base.errors import InputError, UsageError
from lgtool.base.lazy import torch
from lgtool.learngene import GeneMeta, Learngene, tensor_specs
from lgtool.rules import RULES, sized_name


def target_arch(
    gene,
    depth: int | None = None,
    width=None,
    num_classes: int | None = None,
    layer_map: list[int] | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
) -> Arch:
    """The Desc-Net architecture for a requested size, or a one-line InputError if the gene cannot make it.

    Worked out once per command; everything below takes the resulting `Arch`. Another `img_size` keeps the
    patch size: the position embedding is resampled to the new grid (`materialize`). A rule that makes its own
    width only (`NARROWS_BY_SELECTION`) makes narrower ones by evenly spaced selection, keeping the head count;
    a rule that changes width itself keeps the head dim. `num_heads` overrides either: the weights do not depend
    on it, and one that does not divide the width is a UsageError (exit 2)."""
    aux = gene.arch
    depth = aux.depth if depth is None else depth
    if depth <= 0:
        raise InputError(f"depth must be at least 1, got {depth}")
    if num_heads is not None and num_heads <= 0:
        raise UsageError(f"--num-heads must be at least 1, got {num_heads}")
    size = {
        "num_classes": aux.num_classes if num_classes is None else num_classes,
        "img_size": img_size or aux.img_size,
    }
    sized = Arch.checked(aux, depth=depth, **size)  # bounds first: a huge depth never reaches the rule
    embed_dim = aux.embed_dim if width is None else parse_width(width, 1)[0]  # its spelling; heads come below
    selected = selection_source(gene, embed_dim) is not None
    RULES[gene.method].check_target(gene.rule, aux, depth, aux.embed_dim if selected else embed_dim, layer_map)
    if num_heads is None and not selected:
        return sized.resized(depth, embed_dim)  # the rule makes the width: Arch's own head count (head dim kept)
    heads = num_heads or aux.num_heads  # selection narrows every head; it does not merge them
    if embed_dim % heads:
        given = "--num-heads" if num_heads is not None else "the learngene's head count"
        raise UsageError(
            f"width {embed_dim} is not divisible by {heads} heads ({given}); "
            f"choose --num-heads among the divisors of {embed_dim}"
        )
    return Arch.checked(sized, embed_dim=embed_dim, num_heads=heads)


def selection_source(gene, width: int) -> int | None:
    """The width whose Desc-Net a `width`-wide one is selected from, or None if the rule makes `width` itself.

    A rule that makes only its own width (`NARROWS_BY_SELECTION`) makes a narrower one by evenly spaced
    selection from its Desc-Net at the Aux width: the rule weight selection uses (Xu et al., ICLR 2024)."""
    aux = gene.arch
    if RULES[gene.method].NARROWS_BY_SELECTION and width < aux.embed_dim:
        return aux.embed_dim
    return None


def describe_layers(gene, target: Arch, layer_map: list[int] | None = None) -> list:
    """Per Desc-Net layer, where it comes from (SWS stage, TLEG slope coefficient, WAVE Aux depth position): the
    rule's layer plan, asked once per Desc-Net; `materialize` builds the blocks from it. `gene`: a learngene or
    its metadata."""
    return RULES[gene.method].layer_plan(gene.rule, gene.arch, target, layer_map)


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
    rules, aux = RULES[gene.method], gene.arch
    own = [a for a in targets if (a.depth, a.embed_dim) != (aux.depth, aux.embed_dim)]
    if not rules.SIZE_SPECIFIC or not own:
        return gene
    tensors = dict(gene.tensors)
    for target in own:
        resized = resize_gene(gene, target)
        for name, role in resized.meta.tensors.items():
            if role.get("template") in rules.SIZE_SPECIFIC:
                tensors[sized_name(target.depth, target.embed_dim, name)] = resized.tensors[name].detach().clone()
    raw = gene.meta.model_dump(by_alias=True)
    meta = GeneMeta.model_validate({**raw, "sizes": [(a.depth, a.embed_dim) for a in own]})
    meta.tensors = {name: role for name, (_, role) in tensor_specs(meta).items()}
    return Learngene(meta, tensors)


def resize_gene(gene, target: Arch):
    """A learngene whose Aux size is `target` (for a rule with size-specific tensors): templates unchanged,
    size-specific tensors resampled (or the size's own, where it was trained), so they can be learned
    (calibrated) as an Aux-Net of that size."""
    rules = RULES[gene.method]
    tensors = rules.resize(gene.rule, gene.tensors, gene.arch, target)
    tensors.update(rules.trained_scalers(gene.tensors, target))
    meta = gene.meta.model_copy(update={"arch": target, "sizes": []}, deep=True)
    meta.tensors = {name: role for name, (_, role) in tensor_specs(GeneMeta.model_validate(meta)).items()}
    return Learngene(meta, tensors)


def is_aux_only(gene, targets: list[Arch]) -> bool:
    return len(targets) == 1 and targets[0] == gene.arch


def sandwich(count: int, samples: int, generator) -> list[int]:
    """Indices of the sizes one step trains: the largest and the smallest (of a cheapest-first list), and
    `samples - 2` others drawn at random without repeats."""
    if count <= samples:
        return list(range(count))
    middle = torch.randperm(count - 2, generator=generator)[: samples - 2] + 1
    return [count - 1, 0, *sorted(middle.tolist())]
