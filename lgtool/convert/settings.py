"""What `lgtool convert` is told about the checkpoint it reads: one field per flag (`lgtool.base.settings`), so
each option's help and range are declared once, for the command line and a library caller alike. Torch-free:
`--help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from lgtool.base.arch import MAX_DEPTH, MAX_EMBED_DIM
from lgtool.base.errors import UsageError
from lgtool.base.settings import check_settings, setting
from lgtool.convert.official import methods_with_official_code
from lgtool.rules import RULES, declared_options, rule_module


def official_help(name: str) -> str:
    """A rule option's help as `convert` reads it: its declaration, and where the checkpoint gives it instead."""
    option = declared_options()[name]
    return f"{option.help.removesuffix('.')} (default: {option.official})."


@dataclass(kw_only=True)
class ConvertConfig:
    """The options of `lgtool convert` that describe the Aux-Net (unset: read from the checkpoint). Valid once
    built: a value outside its range, or a method with no official code, is a UsageError."""

    method: str | None = setting(None, "sws or tleg (default: detected from the keys).", flags=("--method", "-m"))
    stages: list[int] | None = setting(None, official_help("stages"))
    aux_depth: int | None = setting(
        None, "TLEG Aux depth (default: from args.model, else the official 12).", lo=1, limit=MAX_DEPTH
    )
    num_heads: int | None = setting(
        None, "The Aux-Net's heads, when the checkpoint's args do not say them.", lo=1, limit=MAX_EMBED_DIM
    )

    def __post_init__(self):
        check_settings(self)
        check_method(self.method)


def check_method(method: str | None) -> None:
    """--method as typed: one of the rules with official code, else a usage error before any work."""
    if method is None:
        return
    rule_module(method)
    if not RULES[method].OFFICIAL:
        raise UsageError(
            f"--method {method}: there is no official {method.upper()} code to convert from; "
            f"choose {', '.join(methods_with_official_code())}"
        )
