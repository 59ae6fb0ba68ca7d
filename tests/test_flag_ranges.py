"""Every numeric flag of every command has one range, declared once by `setting()` (`lgtool.base.settings`): this
walks the settings each command takes (`lgtool.cli.options.takes`), so a new flag is covered without a new line
here. A value just outside the range is exit 2 and one line naming the flag and its range; so is every other value
outside it (far below, far above, NaN and Inf), and a size above the most lgtool builds (`setting(limit=)`); no
option of any command keeps a range of its own (typer's `min=`/`max=`), and every size flag has its limit."""

from __future__ import annotations

from dataclasses import MISSING

import pytest
import typer

from lgtool.base import arch
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


def _cases(values_outside) -> list:
    """(command, setting, value) for every flag of every command and each value `values_outside` gives it."""
    return [
        pytest.param(name, f, value, id=f"{name} {flag(f)}={value}")
        for name, callback in _commands().items()
        for cls in getattr(callback, "settings_classes", ())
        for f in settings_of(cls)
        if not f.metadata["argument"]
        for value in values_outside(f)
    ]


CASES = _cases(_outside)


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


def _far_outside(f) -> list[str]:
    """Every other kind of value outside the setting's range: far below and above it, and for a number that is not a
    count, NaN and the infinities."""
    m, bad = f.metadata, []
    low, high = m["lo"] if m["lo"] is not None else m["above"], m["hi"] if m["hi"] is not None else m["below"]
    if low is not None:
        bad.append(low - 10**6)
    if high is not None:
        bad.append(high + 10**6)
    if m["limit"] is not None:
        bad += [m["limit"] + 1, m["limit"] * 10**6]
    if bad and any(isinstance(v, float) for v in (low, high)):
        bad += ["nan", "inf", "-inf"]
    return [str(v) for v in bad]


FAR_CASES = _cases(_far_outside)


@pytest.mark.parametrize("name, f, value", FAR_CASES)
def test_every_value_outside_a_flag_range_is_one_line_and_exit_2(run_cli, name, f, value):
    code, out, err = run_cli(name, *_required(name), f"{flag(f)}={value}")
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith(f"error: {flag(f)} ") and "Traceback" not in err, err
    m = f.metadata
    if m["limit"] is not None and value.isdigit() and int(value) > m["limit"]:
        assert f"{flag(f)} {value} is more than lgtool builds (at most {m['limit']})" in err
    elif value in ("nan", "inf", "-inf"):
        assert f"{flag(f)} must be a finite number" in err
    else:
        assert f"{flag(f)} must be {bounds(f)}, got " in err


# The most lgtool builds of each size a flag can ask for (`lgtool.base.arch`), by the setting's name.
SIZE_LIMITS = {
    **dict.fromkeys(("depth", "aux_depth", "depths", "width_depths"), arch.MAX_DEPTH),
    **dict.fromkeys(("img_size", "patch_size"), arch.MAX_IMG_SIZE),
    **dict.fromkeys(("num_heads", "widths", "template_size"), arch.MAX_EMBED_DIM),
    "num_classes": arch.MAX_NUM_CLASSES,
}


def test_every_size_flag_has_the_most_lgtool_builds_as_its_limit():
    sizes = [
        (name, f)
        for name, callback in _commands().items()
        for cls in getattr(callback, "settings_classes", ())
        for f in settings_of(cls)
        if f.name in SIZE_LIMITS
    ]
    assert {name for name, _ in sizes} >= {"learn", "expand", "finetune", "convert", "bench"}
    wrong = [f"lgtool {name} {flag(f)}: {f.metadata['limit']}" for name, f in sizes
             if f.metadata["limit"] != SIZE_LIMITS[f.name]]  # fmt: skip
    assert not wrong, f"size flags without lgtool's limit: {wrong}"


def test_the_help_gives_a_size_flag_its_limit(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    code, out, _ = run_cli("expand", "--help")
    depth = next(line for line in out.splitlines() if "--depth" in line and "Desc-Net depth" in line)
    assert code == 0 and f"at least 1 and at most {arch.MAX_DEPTH}" in depth, depth
