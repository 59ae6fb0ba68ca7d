"""One rule per method: which template tensors a learngene stores and how they become block weights.

Every rule module has the same shape, `RuleModule` (rules/base.py), so the rest of lgtool asks the rule and never
names a method. A new method is one module here plus one line in `RULES`.

Rule modules never import torch at module level (`torch` there is `lgtool.base.lazy.torch`), so `inspect` can
ask a rule its limits cheaply.
"""

from lgtool.base.errors import UsageError
from lgtool.rules import sws, tleg, wave
from lgtool.rules.base import RuleModule, RuleOption, fresh_slot, sized_name

RULES: dict[str, RuleModule] = {"sws": sws, "tleg": tleg, "wave": wave}
__all__ = ["RULES", "RuleModule", "RuleOption", "declared_options", "fresh_slot", "rule_module", "sized_name"]


def rule_module(method: str):
    """The rule module of `method`, or a usage error naming the choices."""
    if method not in RULES:
        raise UsageError(f"unknown method {method!r}: choose {', '.join(RULES)}")
    return RULES[method]


def declared_options(rules: dict | None = None) -> dict[str, RuleOption]:
    """Every option the rules declare (`OPTIONS`), in their order; one name means one option, whichever rule
    declares it, so two rules may share a name only with the same declaration."""
    out: dict[str, RuleOption] = {}
    for method, module in (RULES if rules is None else rules).items():
        for name, option in module.OPTIONS.items():
            if out.setdefault(name, option) != option:
                raise TypeError(f"rule {method!r} declares option {name!r} unlike another rule")
    return out
