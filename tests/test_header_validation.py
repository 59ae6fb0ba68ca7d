"""A learngene's header is validated in full before anything is read or allocated: every arch and rule
field against its range, the relations between them, the tensor dtypes and names, and the sizes the
metadata claims against the shapes the header gives. A crafted header is one line and exit 3, at once."""

import json
import math
import os
import struct
import time
import tracemalloc

import pytest
from conftest import tiny_gene

import lgtool
from lgtool.base.arch import MAX_DEPTH, Arch
from lgtool.base.errors import InputError
from lgtool.rules import RULES

METHODS = ("sws", "tleg", "wave")

# What every field is set to in turn. NaN goes into the header as the JSON literal NaN.
BAD_VALUES = {"zero": 0, "negative": -1, "huge": 10**12, "nan": math.nan, "string": "wide", "list": [1]}

# Mutations the metadata model accepts on its own (the value is in range and of the right type): the file
# is still refused, further on, with this message. Every other mutation must fail metadata validation
# with a message that names the field. Bool fields are strict (JSON true/false only), so 0 is refused.
STILL_VALID_METADATA = {
    ("arch", "num_classes", "zero"): "tensors do not match the metadata (unexpected head.bias)",  # 0: no head
}


def _cases():
    for method in METHODS:
        for field in Arch.model_fields:
            yield pytest.param(method, "arch", field, id=f"{method}-arch.{field}")
        for field in RULES[method].Rule.model_fields:
            yield pytest.param(method, "rule", field, id=f"{method}-rule.{field}")


# --- rewriting a safetensors header in place: 8-byte little-endian length, JSON, the data bytes kept ---


def read_raw(path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_raw(path, header: dict, body: bytes) -> None:
    text = json.dumps(header, allow_nan=True).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def edit_metadata(path, edit) -> None:
    """Apply `edit` to the learngene metadata document (a dict) and write it back."""
    header, body = read_raw(path)
    doc = json.loads(header["__metadata__"]["learngene"])
    edit(doc)
    header["__metadata__"]["learngene"] = json.dumps(doc, allow_nan=True)
    write_raw(path, header, body)


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory):
    """The bytes of a valid tiny learngene of each method."""
    folder = tmp_path_factory.mktemp("genes")
    return {m: tiny_gene(m).save(folder / f"{m}.safetensors").read_bytes() for m in METHODS}


@pytest.fixture
def fresh(tmp_path, valid_bytes):
    """A valid learngene file of `method` at a fresh path, to be mutated."""

    def make(method):
        path = tmp_path / f"{method}.safetensors"
        path.write_bytes(valid_bytes[method])
        return path

    return make


def assert_refused(path, run_cli, tmp_path, match: str) -> float:
    """load_learngene, `inspect` and `expand` all refuse `path` with one line naming `match`, exit 3.
    Returns the seconds they took together."""
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as refused:
            lgtool.load_learngene(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert match in str(refused.value)
    assert "\n" not in str(refused.value)
    assert peak < 50 << 20, f"{peak / 2**20:.0f} MB traced while refusing a header"
    out = tmp_path / "desc"
    for args in (("inspect", path), ("expand", path, "-o", out)):
        code, stdout, stderr = run_cli(*args)
        assert code == 3, (args[0], code, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert "Traceback" not in stderr and match in stderr
        assert stdout == ""
    assert not out.exists()
    return time.perf_counter() - start


@pytest.mark.parametrize(("method", "section", "field"), list(_cases()))
def test_every_field_out_of_range_or_of_the_wrong_type_is_refused(method, section, field, fresh, run_cli, tmp_path):
    elapsed = 0.0
    for label, value in BAD_VALUES.items():
        path = fresh(method)
        edit_metadata(path, lambda doc, value=value: doc[section].__setitem__(field, value))
        expected = STILL_VALID_METADATA.get((section, field, label))
        if expected is None:  # the metadata model itself refuses it, naming the field
            with pytest.raises(InputError, match="invalid learngene metadata: ") as refused:
                lgtool.load_learngene(path)
            assert field in str(refused.value), (label, str(refused.value))
            expected = "invalid learngene metadata: "
        elapsed += assert_refused(path, run_cli, tmp_path, expected)
    assert elapsed / len(BAD_VALUES) < 1.0, f"{elapsed / len(BAD_VALUES):.2f} s per refused header"


def test_still_valid_mutations_name_real_cases():
    """STILL_VALID_METADATA cannot go stale: each entry is a field and a value the big test tries."""
    rule_fields = {f for m in METHODS for f in RULES[m].Rule.model_fields}
    for section, field, label in STILL_VALID_METADATA:
        assert field in (Arch.model_fields if section == "arch" else rule_fields)
        assert label in BAD_VALUES


@pytest.mark.parametrize("method", METHODS)
def test_a_method_that_disagrees_with_the_rule_is_refused(method, fresh, run_cli, tmp_path):
    other = next(m for m in METHODS if m != method)
    path = fresh(method)
    edit_metadata(path, lambda doc: doc.update(method=other))
    assert_refused(path, run_cli, tmp_path, f"method '{other}' disagrees with rule.method '{method}'")


@pytest.mark.parametrize("method", METHODS)
def test_an_integer_tensor_is_refused(method, fresh, run_cli, tmp_path):
    path = fresh(method)
    header, body = read_raw(path)
    name = sorted(k for k in header if k != "__metadata__")[0]
    assert header[name]["dtype"] == "F32"
    header[name]["dtype"] = "I32"  # same size: the header stays consistent, only the dtype is wrong
    write_raw(path, header, body)
    assert_refused(path, run_cli, tmp_path, f"tensor {name} is 'I32'; a learngene holds floating-point tensors")


@pytest.mark.parametrize("method", METHODS)
def test_a_listed_tensor_missing_from_the_file_is_refused(method, fresh, run_cli, tmp_path):
    path = fresh(method)
    edit_metadata(path, lambda doc: doc["tensors"].update({"ghost.weight": {"nonblock": "ghost.weight"}}))
    assert_refused(path, run_cli, tmp_path, "the metadata lists ghost.weight, the file lacks it")


@pytest.mark.parametrize("method", METHODS)
def test_an_unlisted_tensor_in_the_file_is_refused(method, fresh, run_cli, tmp_path):
    path = fresh(method)
    header, body = read_raw(path)
    header["ghost.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(body), len(body) + 4]}
    write_raw(path, header, body + bytes(4))
    assert_refused(path, run_cli, tmp_path, "the file holds ghost.weight, the metadata does not list it")


@pytest.mark.parametrize("method", METHODS)
def test_a_made_up_tensor_role_is_refused(method, fresh, run_cli, tmp_path):
    path = fresh(method)
    edit_metadata(path, lambda doc: doc["tensors"].update({"pos_embed": {"slot": [1]}}))
    assert_refused(path, run_cli, tmp_path, 'role of pos_embed is {"slot": [1]}, expected {"nonblock": "pos_embed"}')


@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_global_pool_is_refused(method, fresh, run_cli, tmp_path):
    path = fresh(method)
    edit_metadata(path, lambda doc: doc["arch"].update(global_pool="bogus"))
    assert_refused(path, run_cli, tmp_path, "arch: global_pool 'bogus' is not one of")


@pytest.mark.parametrize("method", METHODS)
def test_a_size_the_tensors_do_not_have_is_refused(method, fresh, run_cli, tmp_path):
    """Valid metadata (width 64, 4 heads of 16: the WAVE rule still fits), but the tensors are width 32."""
    path = fresh(method)
    edit_metadata(path, lambda doc: doc["arch"].update(embed_dim=64, num_heads=4))
    assert_refused(path, run_cli, tmp_path, "tensors do not match the metadata (")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda doc: doc["arch"].update(patch_size=5), "arch: patch_size 5 does not divide img_size 28"),
        (lambda doc: doc["arch"].update(num_heads=3), "arch: num_heads 3 does not divide embed_dim 32"),
        (lambda doc: doc["arch"].update(global_pool="token"), "global_pool 'token' needs class_token true"),
        (lambda doc: doc["arch"].update(global_pool="map"), "global_pool 'map' is not one of"),
        (lambda doc: doc["arch"].update(mlp_ratio=math.inf), "arch.mlp_ratio: Input should be a finite number"),
        (lambda doc: doc["arch"].update(depth=MAX_DEPTH + 1), "arch.depth: Input should be less than or equal to"),
        (lambda doc: doc["rule"].update(stage_sizes=[2, 1, 3]), "rule.stage_sizes [2, 1, 3] do not add up"),
        (lambda doc: doc["input"].update(std=[0.0]), "input.std.0: Input should be greater than 0"),
        (lambda doc: doc["input"].update(mean=[0.5, 0.5]), "input.mean has 2 values for 1 input channels"),
    ],
    ids=["patch", "heads", "token-pool", "map-pool", "inf-mlp", "deep", "stages", "std", "channels"],
)
def test_inconsistent_fields_are_refused(edit, match, fresh, run_cli, tmp_path):
    path = fresh("sws")
    edit_metadata(path, edit)
    assert_refused(path, run_cli, tmp_path, match)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h["pos_embed"].update(shape=[10**12]), "needs 4000000000000 bytes"),
        (lambda h: h["pos_embed"].update(shape=[-1]), "bad tensor entry 'pos_embed'"),
        (lambda h: h["pos_embed"].update(dtype=7), "bad tensor entry 'pos_embed'"),
        (lambda h: h["__metadata__"].update(learngene=5), "__metadata__ is not a map of strings"),
    ],
    ids=["huge-shape", "negative-shape", "dtype-type", "metadata-type"],
)
def test_a_corrupt_safetensors_header_is_refused(edit, match, fresh, run_cli, tmp_path):
    path = fresh("tleg")
    header, body = read_raw(path)
    edit(header)
    write_raw(path, header, body)
    assert_refused(path, run_cli, tmp_path, match)


def test_inspect_at_the_largest_depth_is_instant_and_counts_the_family_in_closed_form(fresh, run_cli):
    """TLEG tensors do not depend on the depth: a header may claim the largest one, and `inspect` must not
    loop over it; its storage ratio still equals the sum over every depth."""
    path = fresh("tleg")
    edit_metadata(path, lambda doc: doc["arch"].update(depth=MAX_DEPTH))
    start = time.perf_counter()
    code, stdout, _ = run_cli("inspect", path, "--json")
    assert code == 0 and time.perf_counter() - start < 1.0
    summary = json.loads(stdout)
    arch = Arch(**summary["arch"])
    family = sum(arch.model_copy(update={"depth": d}).num_params() for d in range(1, MAX_DEPTH + 1))
    assert summary["storage_ratio"] == round(family / summary["params"], 3)
    assert summary["storage_ratio_depths"] == [1, MAX_DEPTH]


# --- what safetensors checks (lgtool reads through it) and lgtool says in one line, naming the file ---


def _last(header: dict) -> tuple[str, int, int]:
    name = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    return name, *header[name]["data_offsets"]


def _gap(header, body):
    name, begin, end = _last(header)
    header[name]["data_offsets"] = [begin + 4, end + 4]
    return header, body[:begin] + bytes(4) + body[begin:]


def _overlap(header, body):
    name, begin, end = _last(header)
    header[name]["data_offsets"] = [begin - 4, end - 4]
    return header, body[: begin - 4] + body[begin:]


def _raw_header(path, text_edit) -> None:
    """Rewrite the header's JSON text itself (what a dict cannot hold: a key twice, bytes that are not UTF-8)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    text = text_edit(data[8 : 8 + n])
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])


@pytest.mark.parametrize(
    ("craft", "match"),
    [
        (lambda p: write_raw(p, *_gap(*read_raw(p))), "truncated or corrupt safetensors file ("),
        (lambda p: write_raw(p, *_overlap(*read_raw(p))), "truncated or corrupt safetensors file ("),
        (lambda p: p.write_bytes(p.read_bytes() + bytes(8)), "truncated or corrupt"),
        (lambda p: write_raw(p, read_raw(p)[0] | {"__metadata__": [1]}, read_raw(p)[1]), "is not a map of strings"),
        (lambda p: _raw_header(p, lambda t: b"[" + t + b"]"), "not a safetensors file (header is not a JSON object)"),
        (lambda p: _raw_header(p, lambda t: t.replace(b'{"', b'{"\xff', 1)), "not a safetensors file ("),
        (lambda p: _raw_header(p, lambda t: t + b"}"), "not a safetensors file ("),
        (lambda p: _raw_header(p, lambda t: t.replace(b'"format"', b'"format": "np", "format"', 1)), "appears twice"),
        (lambda p: p.write_bytes(struct.pack("<Q", p.stat().st_size) + p.read_bytes()[8:]), "truncated or corrupt"),
    ],
    ids=[
        "gap",
        "overlap",
        "trailing-bytes",
        "metadata-a-list",
        "header-a-list",
        "not-utf8",
        "not-json",
        "metadata-key-twice",
        "length-past-the-end",
    ],  # fmt: skip
)
def test_a_file_safetensors_refuses_is_one_line(craft, match, fresh, run_cli, tmp_path):
    path = fresh("tleg")
    craft(path)
    assert_refused(path, run_cli, tmp_path, match)


def test_a_fifo_given_as_a_learngene_is_one_line_and_never_waits(run_cli, tmp_path):
    fifo = tmp_path / "g.safetensors"
    os.mkfifo(fifo)  # nothing ever writes it: a blocking open would hang here
    with pytest.raises(InputError, match="not a regular file"):
        lgtool.load_learngene(fifo)
    for args in (("inspect", fifo), ("expand", fifo, "-o", tmp_path / "desc")):
        code, stdout, stderr = run_cli(*args)
        assert code == 3 and stdout == "" and len(stderr.strip().splitlines()) == 1, (args[0], code, stderr)
        assert "not a regular file" in stderr
