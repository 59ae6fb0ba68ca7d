"""Untrusted text is data: names, provenance and config strings are shown literally, and --json is strict JSON.

A learngene's provenance, a config.json or an output name can hold anything: rich markup (`[bold]`, `[/x]`),
terminal escape sequences, NaN. `literal` makes such text safe to print through rich (markup escaped, control
characters written as escapes) and `dumps` makes JSON that every parser accepts (NaN and infinities become null).
A file name need not be UTF-8: `text` writes its other bytes as `\\xNN`, so that no print or write fails on it.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata

from rich.markup import escape


def text(value) -> str:
    """`str(value)` (or a path's name as `os.fsdecode` reads it) that can always be encoded as UTF-8: the bytes of a
    file name that are not UTF-8, which Python holds as lone surrogates, become `\\xNN` escapes, as `repr` of the
    bytes shows them; any other lone surrogate becomes its `\\uNNNN` escape."""
    s = os.fsdecode(value) if isinstance(value, os.PathLike) else str(value)
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate outside the range surrogateescape decodes bytes to
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def clean(obj):
    """`obj` (JSON-like) with every string, keys too, made `text`: what is written as JSON or shown in a card."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {clean(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    if isinstance(obj, tuple):  # kept a tuple: a card shows model arguments by repr
        return tuple(clean(v) for v in obj)
    return obj


def _visible(c: str) -> str:
    if c == " " or unicodedata.category(c)[0] not in "CZ":  # control, format, unassigned; separators but space
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def literal(value) -> str:
    """`str(value)` to print through rich as it is: markup escaped, control characters shown as escapes."""
    return escape("".join(_visible(c) for c in text(value)))


def finite(obj):
    """`obj` (JSON-like) with every NaN or infinite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """Strict JSON: NaN and infinities as null, never the bare NaN/Infinity that json.dumps writes by default."""
    return json.dumps(clean(finite(obj)), allow_nan=False, **kwargs)
