"""A safetensors file opened and checked by safetensors itself (`safe_open`), torch-free with the numpy framework:
the 8-byte length, the JSON, known dtypes, shapes that fit their offsets, offsets that tile the data to the file's
end, `__metadata__` a map of strings. `inspect` and every validation of a file before its weights are read stand
on it, and a refusal is one InputError line that names the file.

What lgtool still reads by hand, because the library cannot serve it (checked against safetensors 0.4.0 and 0.8.0):
a key given twice, which safetensors takes (the last wins) but lgtool refuses, and the entry at fault when
safetensors refuses a header, since its messages name none.

`encode_header` writes a header as safetensors does, for a file written tensor by tensor (`hub.save_tensors`)."""

from __future__ import annotations

import json
import os
import stat
import struct
from contextlib import contextmanager

from safetensors import SafetensorError, safe_open

from lgtool.base.arch import numel
from lgtool.base.errors import InputError

MAX_HEADER = 100 << 20  # safetensors' own limit: lgtool reads no longer header than it would
# Bytes per element of every safetensors dtype of whole bytes, for naming a refused entry; a learngene holds
# only the floating ones.
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
# The dtypes safetensors' writer lays out in this order (its Rust `Dtype` enum, descending: widest first), then
# by name; `tests/test_stream_write.py` holds this to the installed safetensors.
WRITE_ORDER = (
    "U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16",
    "F8_E5M2FNUZ", "F8_E4M3FNUZ", "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL",
)  # fmt: skip


def safetensors_header(path) -> tuple[dict, dict]:
    """({name: {dtype, shape}}, metadata) of a safetensors file, checked by safetensors, torch-free."""
    with open_safetensors(path) as (f, _):
        return entries(f), f.metadata() or {}


def entries(f) -> dict:
    """{name: {"dtype": "F32", "shape": [...]}} of an open `safe_open` handle, by name."""
    slices = {name: f.get_slice(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    return {name: {"dtype": s.get_dtype(), "shape": list(s.get_shape())} for name, s in slices.items()}


@contextmanager
def open_safetensors(path, framework: str = "numpy"):
    """(`safe_open` handle, descriptor) of a regular file, opened once and without blocking (a FIFO cannot hang
    the read); safetensors opens it by that descriptor, so whatever else reads the descriptor (a digest) reads
    the same file. `framework`: "numpy" keeps torch out, "pt" gives torch tensors."""
    fd = _open_regular(path)
    try:
        raw = _header_bytes(fd)
        header = _parsed(path, raw)
        try:
            handle = safe_open(_by_descriptor(fd, path), framework=framework)
        except SafetensorError as e:
            raise InputError(f"{path}: {_refusal(raw, header, e)}") from None
        except OSError as e:  # the name by descriptor could not be opened or mapped
            raise InputError(f"{path}: cannot read it ({e.strerror or e})") from None
        with handle as f:
            yield f, fd
    finally:
        os.close(fd)


def _open_regular(path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file")
    return fd


def _by_descriptor(fd: int, path) -> str:
    """A name of the open file: Linux's /proc/self/fd (any file name, even one not UTF-8, which safetensors
    refuses), else the path."""
    return f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else os.fspath(path)


def _header_bytes(fd: int) -> bytes | None:
    """The header's JSON bytes, or None where the 8-byte length does not fit the file."""
    n = int.from_bytes(os.pread(fd, 8, 0), "little")
    return os.pread(fd, n, 8) if 0 < n <= min(MAX_HEADER, os.fstat(fd).st_size - 8) else None


def _parsed(path, raw: bytes | None):
    """The header as JSON, or None where it is none (safetensors says why). Read by hand because safetensors takes
    a tensor name or __metadata__ entry given twice (the last wins): lgtool refuses it, which one counts would be
    a guess."""
    try:
        return None if raw is None else json.loads(raw.decode(), object_pairs_hook=unique_keys)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return None
    except DuplicateKey as e:
        raise InputError(f"{path}: corrupt safetensors header (the key {str(e)!r} appears twice)") from None


def _refusal(raw: bytes | None, header, error: SafetensorError) -> str:
    """What safetensors refused, in one line. Its messages name no entry (0.8.0: "invalid shape, data type, or
    offset for tensor", "invalid type: integer `-1`, expected usize at line 1 column 62"), so the entry at fault
    is found in the header lgtool parsed."""
    said = " ".join(str(error).split()).removeprefix("Error while deserializing header: ")
    if raw is None:
        return "not a safetensors file (truncated or corrupt header)"
    if header is None:
        return f"not a safetensors file ({said})"
    if not isinstance(header, dict):
        return "not a safetensors file (header is not a JSON object)"
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        return "corrupt safetensors header (__metadata__ is not a map of strings)"
    for name, entry in header.items():
        if _malformed(entry):
            return f"corrupt safetensors header (bad tensor entry {name!r})"
        per = DTYPE_BYTES.get(entry["dtype"])  # a dtype this table lacks (sub-byte, newer): safetensors' words
        (begin, end), nbytes = entry["data_offsets"], numel(entry["shape"]) * (per or 0)
        if per and end - begin != nbytes:
            return (
                f"corrupt safetensors header ({name!r}: {entry['dtype']!r} {entry['shape']} needs {nbytes} bytes, "
                f"its offsets hold {end - begin})"
            )
    return f"truncated or corrupt safetensors file ({said})"


def encode_header(entries: dict, metadata: dict | None = None) -> tuple[bytes, list[tuple[str, int, int]]]:
    """The header `safetensors.torch.save_file` writes for tensors `entries` ({name: (dtype, shape, bytes)}, a
    dtype of `WRITE_ORDER`) and `metadata` (a map of strings, or None for none), byte for byte: the tensors
    ordered by dtype then name, the JSON compact (non-ASCII as UTF-8) and padded with spaces to a multiple of 8
    bytes after its 8-byte length. With it, where each tensor's data goes: (name, begin, end) in file order,
    offsets into the data that follows the header. Several metadata keys go in their order here; safetensors
    orders them at random."""
    if "__metadata__" in entries:
        raise ValueError("a tensor cannot be named __metadata__")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata is a map of strings")
    rank = {dtype: i for i, dtype in enumerate(WRITE_ORDER)}
    header = {} if metadata is None else {"__metadata__": dict(metadata)}
    spans, offset = [], 0
    for name in sorted(entries, key=lambda k: (rank[entries[k][0]], k)):
        dtype, shape, nbytes = entries[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        spans.append((name, offset, offset + nbytes))
        offset += nbytes
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, spans


class DuplicateKey(Exception):
    pass


def unique_keys(pairs: list) -> dict:
    """A JSON object, refused when a key appears twice."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _malformed(entry) -> bool:
    """Whether a header entry is no map of a dtype name, a shape and two data offsets in order."""

    def count(x):
        return type(x) is int and x >= 0

    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return True
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(count(s) for s in shape):
        return True
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(count(o) for o in offsets):
        return True
    return offsets[0] > offsets[1]
