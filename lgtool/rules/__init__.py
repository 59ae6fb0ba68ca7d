"""One rule per method: which template tensors a learngene stores and how they become block weights.

Every rule module has the same shape, so the rest of lgtool asks the rule and never names a method.
A new method is one module here plus one line in `RULES`.
- `Rule`: a pydantic model of the rule's settings, `method` first (stored in the artifact's metadata);
- `OPTIONS`: the `learn` options it takes besides the Aux depth; `make_rule(options, aux_depth, head_dim)
  -> (rule, aux_depth)`;
- `check_aux(rule, arch)`: ValueError if the rule does not fit the Aux-Net (run by the metadata model);
- `check_target(rule, aux, depth, width, layer_map)`: one-line InputError if it cannot make that size;
- `template_specs(rule, arch) -> {name: (shape, role)}`: the template tensors and what each one is;
- `init_templates(rule, arch, generator)`: fresh templates, the paper's initialization;
- `seed_templates(rule, arch, layers)`: templates fitted to an ancestor's layers;
- `depths(rule, arch)` / `widths(rule, arch)`: the Desc-Net sizes it can make (torch-free, for `inspect`);
- `blocks(rule, tensors, aux, target, layer_map)` -> [{slot: tensor}] for every layer of `target`,
  differentiable in `tensors`; `nonblock(...)` -> the embeddings, final norm and head at `target`'s size;
- `describe_layers(rule, aux, target, layer_map)`: per layer, where it comes from, in `LAYER_SOURCE` terms;
- `SIZE_SPECIFIC`: template roles learned anew for each size (calibration), with `resize` and
  `trained_scalers` if any (`lgtool.family.resize_gene` uses them).
- `NARROWS_BY_SELECTION`: True if the rule makes its own width only, and a narrower one is evenly spaced
  selection from its Desc-Net at that width (done once for all such rules, in `materialize`).
- `OFFICIAL` (the repository whose Aux-Net checkpoints `lgtool convert` reads, or None) and
  `from_official(keys, model, options)`: which official key becomes which template, the rule and Aux depth.

Rule modules never import torch at module level (`torch` there is `lgtool.format.lazy.torch`), so `inspect` can
ask a rule its limits cheaply.
"""

from lgtool.format.errors import UsageError
from lgtool.rules import sws, tleg, wave
from lgtool.rules.base import fresh_slot, sized_name

RULES = {"sws": sws, "tleg": tleg, "wave": wave}
__all__ = ["RULES", "fresh_slot", "rule_module", "sized_name"]


def rule_module(method: str):
    """The rule module of `method`, or a usage error naming the choices."""
    if method not in RULES:
        raise UsageError(f"unknown method {method!r}: choose {', '.join(RULES)}")
    return RULES[method]
