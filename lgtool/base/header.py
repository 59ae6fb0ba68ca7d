"""The safetensors header, read and checked without torch: an 8-byte length, then a JSON map of tensor entries
and `__metadata__` (a map of strings). `inspect` and every validation of a file before its weights are read
stand on it. `encode_header` writes one as safetensors does, for a file written tensor by tensor."""

from __future__ import annotations

import json
import struct
from contextlib import nullcontext
from pathlib import Path

from lgtool.base.arch import numel
from lgtool.base.errors import InputError

MAX_HEADER = 100 << 20  # safetensors' own limit
# Bytes per element of every safetensors dtype of whole bytes; a learngene holds only the floating ones.
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


def safetensors_header(path, data=None) -> tuple[dict, dict]:
    """Parse and check a safetensors header, torch-free: ({name: entry}, metadata). `data`: a memory map of the
    file (`mmap.mmap`), already made: the header is read from it, not from the file again.

    Checked as safetensors itself does before it maps anything: every entry a known dtype, a shape of
    non-negative integers and data offsets holding exactly that many bytes, the entries tiling the data
    section without gaps or overlaps, and the metadata a map of strings."""
    path = Path(path)
    if data is None and not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size if data is None else len(data)
    with open(path, "rb") if data is None else nullcontext(data) as f:
        f.seek(0)
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n <= 0 or n > min(MAX_HEADER, size - 8):
            raise InputError(f"{path}: not a safetensors file (truncated or corrupt header)")
        try:
            header = json.loads(f.read(n), object_pairs_hook=unique_keys)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise InputError(f"{path}: not a safetensors file (header is not valid JSON)") from None
        except DuplicateKey as e:  # safetensors refuses these too: which one counts would be a guess
            raise InputError(f"{path}: corrupt safetensors header (the key {str(e)!r} appears twice)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError(f"{path}: corrupt safetensors header (__metadata__ is not a map of strings)")
    spans = []
    for name, entry in header.items():
        nbytes = _entry_bytes(entry)
        if nbytes is None:
            raise InputError(f"{path}: corrupt safetensors header (bad tensor entry {name!r})")
        begin, end = entry["data_offsets"]
        if end - begin != nbytes:
            raise InputError(
                f"{path}: corrupt safetensors header ({name!r}: {entry['dtype']!r} {entry['shape']} needs {nbytes} "
                f"bytes, its offsets hold {end - begin})"
            )
        spans.append((begin, end, name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise InputError(f"{path}: corrupt safetensors header (tensor {name!r} does not start where the last ends)")
        end = stop
    if end != size - 8 - n:
        raise InputError(f"{path}: truncated or corrupt: {size - 8 - n} data bytes, header describes {end}")
    return header, metadata


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
    """A JSON object, refused (as safetensors refuses it) when a key appears twice."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _entry_bytes(entry) -> int | None:
    """Bytes a header entry's dtype and shape need, or None if the entry is malformed."""

    def count(x):
        return type(x) is int and x >= 0

    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return None
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(count(s) for s in shape):
        return None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(count(o) for o in offsets):
        return None
    if offsets[0] > offsets[1]:
        return None
    per = DTYPE_BYTES.get(entry["dtype"])
    # A dtype this table lacks (sub-byte floats, newer ones): trust its offsets; learngenes refuse it anyway.
    return numel(shape) * per if per else offsets[1] - offsets[0]
