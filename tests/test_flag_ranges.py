"""Every numeric flag of every command has one range, declared once by `setting()` (`lgtool.base.settings`): this
walks the settings each command takes (`lgtool.cli.options.takes`), so a new flag is covered without a new line
here. A value just outside the range is exit 2 and one line naming the flag and its range; no option of any command
keeps a range of its own (typer's `min=`/`max=`)."""

from __future__ import annotations

from dataclasses import MISSING

import pytest
import typer

from lgtool.base.settings import bounds, flag, settings_of
from lgtool.cli import app


def _commands() -> dict:
    return {c.name or c.callback.__name__: c.callback for c in app.registered_commands}


def _outside(f) -> list[str]:
    """Values just outside the setting's range: below its least, above its most."""
    m, bad = f.metadata, []
    if m["lo"] is not None:
        bad.append(m["lo"] - 1)
    if m["above"] is not None:
        bad.append(m["above"])
    if m["hi"] is not None:
        bad.append(m["hi"] + 1)
    if m["below"] is not None:
        bad.append(m["below"])
    return [str(v) for v in bad]


CASES = [
    pytest.param(name, f, value, id=f"{name} {flag(f)}={value}")
    for name, callback in _commands().items()
    for cls in getattr(callback, "settings_classes", ())
    for f in settings_of(cls)
    if not f.metadata["argument"]
    for value in _outside(f)
]


def _required(name: str) -> list[str]:
    """A placeholder for each required argument and option of the command, so only the range is wrong."""
    command = typer.main.get_command(app).commands[name]
    out = []
    for p in command.params:
        if p.required and p.default in (None, MISSING, ...):
            out += ["x"] if p.param_type_name == "argument" else [f"{p.opts[0]}=x"]
    return out


def test_every_command_with_settings_has_numeric_flags_covered():
    covered = {name for name, *_ in (c.values for c in CASES)}
    assert {"learn", "expand", "finetune", "convert", "bench"} <= covered


@pytest.mark.parametrize("name, f, value", CASES)
def test_a_value_outside_a_flag_range_is_exit_2_naming_the_flag(run_cli, name, f, value):
    code, out, err = run_cli(name, *_required(name), f"{flag(f)}={value}")
    assert code == 2, err
    assert err.count("\n") == 1 and f"{flag(f)} must be {bounds(f)}, got " in err


def test_no_option_keeps_a_range_of_its_own():
    """A range is `setting()`'s alone: typer's `min=`/`max=` would be a second check, and a second range text."""
    for name, command in typer.main.get_command(app).commands.items():
        for p in command.params:
            info = p.type_descriptor.parameter_info
            kept = (info.min, info.max)
            assert kept == (None, None), f"lgtool {name} {p.opts[0]} has a range of its own: min, max = {kept}"
