"""Settings that are also flags: a dataclass field made with `setting()` carries its flag, help text and range,
so a command's options are declared once. The CLI builds its options from these fields
(`lgtool.cli.options.takes`), and `check_settings` gives a library caller the same one-line errors as the
command line. Torch-free: `--help` stays fast.

A setting made with `argument=True` is a positional argument on the command line rather than a flag (`lgtool
finetune SRC`).

A list setting (`list[int]`, `list[float]`, `list[str]`) is written on the command line as comma-separated
values (`--depths 2,6,12`), or with `repeat` by giving the flag once per value (`--learngene a --learngene b`); its
range and choices apply to every value, and it names at least one value unless made with `allow_empty`.

A setting's range is declared there alone, and checked here: no option keeps one of its own (typer's `min=`), and
the checks a settings class makes itself are relations between settings (the heads divide the width).

A setting made with `cli=False` is library-only: checked and documented like the others, but no flag; its errors
name it as `Class.field`.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields

from lgtool.base.errors import UsageError


def setting(
    default=MISSING,
    help: str = "",
    *,
    lo=None,
    hi=None,
    above=None,
    below=None,
    limit=None,
    choices=None,
    flags=(),
    allow_empty=False,
    argument=False,
    repeat=False,
    cli=True,
    default_factory=MISSING,
):
    """A field that is also a flag: `lo`/`hi` inclusive bounds, `above`/`below` exclusive ones (where a value
    stops meaning anything); `limit` the most lgtool builds of a size (`lgtool.base.arch`'s MAX_*: a depth of 2000
    means something, but is not built), its error saying so; `choices` the values it may take (or a function
    naming them, asked at every check: a registry that may grow); `flags` its names on the command line (default:
    `--field-name`); `allow_empty` lets a list setting name nothing; `repeat` makes
    a list setting's flag given once per value rather than comma-separated; `argument` makes it a positional
    argument instead of a flag; `cli=False` makes it library-only (checked, no flag). No default: the setting is
    required."""
    meta = {"help": help, "lo": lo, "hi": hi, "above": above, "below": below, "limit": limit, "choices": choices}
    meta.update(flags=flags, allow_empty=allow_empty, repeat=repeat, argument=argument, cli=cli)
    return field(default=default, default_factory=default_factory, metadata=meta)


def declared(cls) -> list:
    """The `setting()` fields of `cls`, flags and library-only ones (plain fields are not)."""
    return [f for f in fields(cls) if "help" in f.metadata]


def settings_of(cls) -> list:
    """The fields of `cls` that are flags."""
    return [f for f in declared(cls) if f.metadata.get("cli", True)]


def check_settings(obj) -> None:
    """Every `setting()` field of `obj` in its range: call from `__post_init__`."""
    for f in declared(obj):
        library_only = not f.metadata.get("cli", True)
        check(f, getattr(obj, f.name), f"{type(obj).__name__}.{f.name}" if library_only else None)


def flag(f) -> str:
    if f.metadata.get("argument"):
        return f.name.upper()  # as usage text names an argument: SRC
    return (f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),))[0]


def choices_of(f) -> tuple | None:
    """The values a setting may take, None for any."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def bounds(f, with_limit: bool = False) -> str:
    """The range of a setting in words, for errors and (`with_limit`, its most built too) --help: "at least 0 and
    below 1", "above 0", "at least 1 and at most 1000"."""
    low = _bound(f.metadata, "lo", "above", "at least", "above")
    high = _bound(f.metadata, "hi", "below", "at most", "below")
    if with_limit and not high and f.metadata["limit"] is not None:
        high = f"at most {_num(f.metadata['limit'])}"
    return " and ".join(part for part in (low, high) if part)


def check(f, value, name: str | None = None) -> None:
    """One-line UsageError if `value` is outside the setting's meaning (NaN and Inf never are inside); the error
    names the setting `name` (default: its flag)."""
    name = name or flag(f)
    if isinstance(value, list | tuple):
        if not value and not f.metadata.get("allow_empty"):
            raise UsageError(f"{name} needs at least one value")
        for item in value:
            _check_one(f, item, name)
    elif value is not None:
        _check_one(f, value, name)


def parse_list(text: str | None, kind: type, name: str) -> list | None:
    """`"2, 6,12"` -> `[2, 6, 12]` for `--name`; None stays None (the setting's own default applies)."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        what = {int: "integers, e.g. 2,4,6", float: "numbers, e.g. 2e-4,5e-4"}.get(kind, "values")
        raise UsageError(f"{name} takes comma-separated {what}") from None


def _check_one(f, value, name: str) -> None:
    m, choices = f.metadata, choices_of(f)
    if choices:
        if value not in choices:
            raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}")
    too_low = (m["lo"] is not None and value < m["lo"]) or (m["above"] is not None and value <= m["above"])
    too_high = (m["hi"] is not None and value > m["hi"]) or (m["below"] is not None and value >= m["below"])
    if too_low or too_high:
        raise UsageError(f"{name} must be {bounds(f)}, got {_num(value)}")
    if m["limit"] is not None and value > m["limit"]:
        raise UsageError(f"{name} {_num(value)} is more than lgtool builds (at most {_num(m['limit'])})")


def _bound(m: dict, inclusive: str, exclusive: str, *words: str) -> str:
    if m[inclusive] is not None:
        return f"{words[0]} {_num(m[inclusive])}"
    return f"{words[1]} {_num(m[exclusive])}" if m[exclusive] is not None else ""


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # integers in full: a seed of 2**64 is not 1.84467e+19
