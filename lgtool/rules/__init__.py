"""One rule per method: which template tensors a learngene stores and how they become block weights.

A rule module exposes the same few functions:
- `Rule`: a pydantic model of the rule's settings (stored in the artifact's metadata);
- `template_specs(rule, arch) -> {name: (shape, role)}`: the template tensors and what each one is;
- `init_templates(rule, arch) -> {name: tensor}`: fresh templates with the official initialization;
- `depths(rule, arch)` / `widths(rule, arch)`: the Desc-Net sizes it can make (torch-free, for `inspect`);
- `blocks(rule, tensors, arch, depth, ...) -> [{slot: tensor}]`: the weights of every layer, differentiable.

Rule modules never import torch at module level, so `inspect` can ask a rule its limits cheaply.
"""

from lgtool.rules import sws, tleg, wave

RULES = {"sws": sws, "tleg": tleg, "wave": wave}


def rule_module(method: str):
    """The rule module of `method`, or a usage error naming the choices."""
    from lgtool.errors import UsageError

    if method not in RULES:
        raise UsageError(f"unknown method {method!r}: choose {', '.join(RULES)}")
    return RULES[method]


def fresh_slot(slot: str, shape, generator=None):
    """timm's ViT initialization of one block tensor: trunc-normal(0.02) weights, zero biases, LN (1, 0)."""
    import torch

    if slot.startswith("norm") and slot.endswith(".weight"):
        return torch.ones(shape)
    if slot.endswith(".bias"):
        return torch.zeros(shape)
    return torch.nn.init.trunc_normal_(torch.empty(shape), std=0.02, generator=generator)
