"""Options declared once: `takes(Settings)` gives a command one typer option per `setting()` field of a settings
dataclass (`lgtool.base.settings`), with the field's flag, help, range and default, and hands the command
the built, validated dataclass instead of loose arguments. A value outside its range is a one-line usage
error before any work starts."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import MISSING

import typer

from lgtool.base.settings import bounds, choices_of, flag, parse_list, settings_of
from lgtool.training.settings import COMMAND_DEFAULTS, TrainConfig


def takes(cls, *, name: str = "cfg", panel: str | None = None, defaults: dict | None = None):
    """`command(..., <name>: cls)` -> a typer command with a flag per setting of `cls`, in the place of the
    `<name>` parameter (so in --help, before the command's own options that follow it); `defaults` overrides the
    field defaults shown and used (a command's own, e.g. `COMMAND_DEFAULTS["learn"]`). Decorators stack."""
    defaults = defaults or {}

    def decorate(command):
        hints = typing.get_type_hints(cls)
        settings = settings_of(cls)
        signature = inspect.signature(command)
        names = list(signature.parameters)
        at = names.index(name) if name in names else len(names)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
        added = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=_option(f, _default(f, defaults), panel),
                annotation=_cli_type(f, hints[f.name]),
            )
            for f in settings
        ]
        params = own[:at] + added + own[at + 1 :]  # keyword-only all: typer calls by name, in this order

        @functools.wraps(command)
        def run(**kwargs):
            values = {f.name: _value(f, hints[f.name], kwargs.pop(f.name)) for f in settings}
            return command(**{name: cls(**values)}, **kwargs)

        run.__signature__ = signature.replace(parameters=params)
        run.settings_classes = (cls, *getattr(command, "settings_classes", ()))  # what it takes, for tests and docs
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


def train_options(command=None, *, defaults_of: str | None = None):
    """The training flags of `learn` and `finetune` (`TrainConfig`), in their own help panel."""
    decorate = takes(TrainConfig, panel="Training", defaults=COMMAND_DEFAULTS.get(defaults_of, {}))
    return decorate if command is None else decorate(command)


def _default(f, defaults: dict):
    if f.name in defaults:
        return defaults[f.name]
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def _option(f, default, panel):
    names = f.metadata["flags"] or (flag(f),)
    choices = choices_of(f)
    extra = bounds(f, with_limit=True) or (f"one of {', '.join(map(str, choices))}" if choices else "")
    help_text = f.metadata["help"] + (f" [{extra}]" if extra else "")  # typer adds [default: ...]
    if isinstance(default, list) and not f.metadata.get("repeat"):
        default = ",".join(map(str, default))
    if f.metadata.get("argument"):
        return typer.Argument(... if default is MISSING else default, help=help_text, rich_help_panel=panel)
    return typer.Option(... if default is MISSING else default, *names, help=help_text, rich_help_panel=panel)


def _cli_type(f, hint):
    """What the flag reads: comma-separated text for a list (unless given once per value), text for a setting
    that takes several types (`str | int`: the dataclass reads the text), else the field's own type."""
    if f.metadata.get("repeat"):
        return hint
    if _list_kind(hint):
        return str | None
    kinds = [h for h in typing.get_args(hint) if h is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(kinds) > 1:
        return str | None if len(kinds) < len(typing.get_args(hint)) else str
    return hint


def _value(f, hint, given):
    kind = _list_kind(hint)
    if kind and f.metadata.get("repeat"):
        return list(given)
    return parse_list(given, kind, flag(f)) if kind else given


def _list_kind(hint) -> type | None:
    """`int` for `list[int]` or `list[int] | None`; None for any other type."""
    for h in (hint, *typing.get_args(hint)):
        if typing.get_origin(h) is list:
            return typing.get_args(h)[0]
    return None
