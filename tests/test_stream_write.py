"""`lgtool.hub.save_tensors` writes a safetensors file tensor by tensor: the very bytes `safetensors.torch.save_file`
writes, for every dtype, shape and metadata it takes, and for tensors that share memory or slice a larger one (which
save_file refuses, so it is given copies of them)."""

import errno
import json
import os
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lgtool.base.header import WRITE_ORDER, encode_header
from lgtool.hub import SAFETENSORS_DTYPES, save_tensors

DTYPES = [getattr(torch, name) for name in SAFETENSORS_DTYPES if hasattr(torch, name)]


def some(dtype, shape, seed=0):
    """A tensor of `dtype` and `shape` with varied bytes (every byte value, not zeros)."""
    n = 1
    for s in shape:
        n *= s
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def both(tmp_path, tensors, metadata=None):
    """(what save_tensors writes, what save_file writes) for `tensors`; save_file gets its own copies."""
    save_tensors(tensors, tmp_path / "stream.safetensors", metadata=metadata)
    own = {k: v.clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    save_file(own, tmp_path / "save_file.safetensors", metadata=metadata)
    return (tmp_path / "stream.safetensors").read_bytes(), (tmp_path / "save_file.safetensors").read_bytes()


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}, {"k\u00e9\u2028": 'v\t\x1f\x7f"\\/\u00fc'}])
def test_the_same_bytes_as_save_file_for_every_dtype_and_shape(tmp_path, metadata):
    shapes = [(), (0,), (3,), (2, 0, 4), (5, 7), (2, 3, 4)]
    tensors = {f"{str(d).removeprefix('torch.')}.{i}": some(d, s, i) for d in DTYPES for i, s in enumerate(shapes)}
    tensors.update(z=some(torch.float32, (3,)), A=some(torch.float32, (1,)), x10=some(torch.int8, ()))
    tensors['n\u00e4me\n\x01"\\'] = some(torch.float16, (2,))  # escaped in the JSON as safetensors escapes it
    stream, reference = both(tmp_path, tensors, metadata)
    assert stream == reference


@pytest.mark.parametrize("tensors", [{}, {"one": torch.ones(())}], ids=["no-tensor", "scalar"])
@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}], ids=["none", "empty", "format"])
def test_the_same_bytes_for_tiny_files(tmp_path, tensors, metadata):
    stream, reference = both(tmp_path, tensors, metadata)
    if tensors or metadata != {}:
        assert stream == reference
    else:  # safetensors 0.8 writes `{},"__metadata__":{}}` here, which is not JSON: its own reader refuses it
        assert stream == b"\x18" + b"\x00" * 7 + b'{"__metadata__":{}}     '
        with safe_open(tmp_path / "stream.safetensors", "pt") as f:
            assert f.metadata() == {} and list(f.keys()) == []


@pytest.mark.parametrize("pad", range(8))
def test_the_header_is_padded_as_safetensors_pads_it(tmp_path, pad):
    stream, reference = both(tmp_path, {"x" * (pad + 1): torch.arange(3.0)}, {"format": "pt"})
    assert stream == reference and struct.unpack("<Q", stream[:8])[0] % 8 == 0


def test_shared_sliced_and_strided_tensors_are_written_as_their_values(tmp_path):
    """SWS's layers of one stage share it, WAVE's layers slice a stack: written straight from that memory."""
    stage, stack = some(torch.float32, (4, 6)), some(torch.float32, (3, 4, 6), 1)
    tensors = {
        "blocks.0.w": stage,
        "blocks.1.w": stage,
        "blocks.2.w": stack[1],
        "blocks.3.w": stack[2, :, 1:5],
        "blocks.4.w": stage.t(),
        "blocks.5.w": stack[:, 0, 0],
        "blocks.6.w": torch.tensor([1.0, -2.0], requires_grad=True),
    }
    stream, reference = both(tmp_path, {k: v.detach() for k, v in tensors.items()}, {"format": "pt"})
    assert stream == reference
    save_tensors(tensors, tmp_path / "grad.safetensors")  # a tensor that requires grad is written as its values
    assert torch.equal(load_file(tmp_path / "grad.safetensors")["blocks.6.w"], torch.tensor([1.0, -2.0]))


def test_several_metadata_keys_are_all_written(tmp_path):
    """safetensors orders several metadata keys at random (a hash map); save_tensors keeps their order."""
    metadata = {"zeta": "1", "alpha": "2", "format": "pt"}
    tensors = {"a": some(torch.float32, (2, 2)), "b": some(torch.bfloat16, (3,))}
    save_tensors(tensors, tmp_path / "m.safetensors", metadata=metadata)
    with safe_open(tmp_path / "m.safetensors", "pt") as f:
        assert f.metadata() == metadata
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
    n = struct.unpack("<Q", (tmp_path / "m.safetensors").read_bytes()[:8])[0]
    assert list(json.loads((tmp_path / "m.safetensors").read_bytes()[8 : 8 + n])["__metadata__"]) == list(metadata)


def test_the_write_order_is_the_installed_safetensors_order(tmp_path):
    """`WRITE_ORDER` (dtypes, widest first, as safetensors lays them out) against safetensors itself."""
    names = {d: SAFETENSORS_DTYPES[str(d).removeprefix("torch.")] for d in DTYPES}
    save_file({names[d]: some(d, (2,)) for d in DTYPES}, tmp_path / "order.safetensors")
    data = (tmp_path / "order.safetensors").read_bytes()
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    laid_out = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    assert laid_out == [d for d in WRITE_ORDER if d in names.values()]


def test_a_dtype_without_a_known_place_is_saved_by_save_file(tmp_path):
    dtype = getattr(torch, "float8_e8m0fnu", None)
    if dtype is None:
        pytest.skip("this torch has no float8_e8m0fnu")
    shared = some(torch.float32, (3,))
    stream, reference = both(tmp_path, {"e": some(dtype, (4,)), "f": shared, "g": shared[1:]}, {"format": "pt"})
    assert stream == reference


def test_a_tensor_named_like_the_metadata_is_refused():
    with pytest.raises(ValueError, match="__metadata__"):
        encode_header({"__metadata__": ("F32", (1,), 4)})


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_the_systems_error():
    with pytest.raises(OSError) as refused:
        save_tensors({"w": torch.zeros(1 << 16)}, "/dev/full", metadata={"format": "pt"})
    assert refused.value.errno == errno.ENOSPC
