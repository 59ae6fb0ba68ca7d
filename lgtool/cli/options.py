"""The training flags of `learn` and `finetune`, declared once: one typer option per `TrainConfig` setting,
with the setting's flag, help, range and default. A command decorated with `train_options` receives the
parsed `cfg: TrainConfig` instead of two dozen loose arguments."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import fields

import typer

from lgtool.training.settings import COMMAND_DEFAULTS, TrainConfig, bounds, flag

PANEL = "Training"


def _settings():
    return [f for f in fields(TrainConfig) if "help" in f.metadata]


def _option(f, default):
    names = f.metadata["flags"] or (flag(f),)
    extra = bounds(f) or (f"one of {', '.join(f.metadata['choices'])}" if f.metadata["choices"] else "")
    help_text = f.metadata["help"] + (f" [{extra}]" if extra else "")  # typer adds [default: ...]
    return typer.Option(default, *names, help=help_text, rich_help_panel=PANEL)


def train_options(command=None, *, defaults_of: str | None = None):
    """`command(..., cfg: TrainConfig)` -> a typer command with every training flag; `cfg` is built from them
    (and validated: a value outside its range is a one-line usage error before any work starts).
    `@train_options(defaults_of="learn")`: the defaults that command has of its own (`COMMAND_DEFAULTS`)."""
    if command is None:
        return functools.partial(train_options, defaults_of=defaults_of)
    own_defaults = COMMAND_DEFAULTS.get(defaults_of, {})
    hints = typing.get_type_hints(TrainConfig)
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "cfg"]
    added = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_option(f, own_defaults.get(f.name, f.default)),
            annotation=hints[f.name],
        )
        for f in _settings()
    ]

    @functools.wraps(command)
    def run(**kwargs):
        cfg = TrainConfig(**{f.name: kwargs.pop(f.name) for f in _settings()})
        return command(cfg=cfg, **kwargs)

    run.__signature__ = signature.replace(parameters=own + added)
    run.__annotations__ = {p.name: p.annotation for p in own + added}
    return run
