"""Untrusted text is data, crafted files are one line, and no request is a crash: names and provenance are printed
literally (rich markup escaped, control characters shown as escapes); --json is strict JSON; a safetensors header
with a key twice is refused as safetensors refuses it; crafted config.json files and --resume checkpoints are
checked before training; out-of-range seeds and sizes are usage errors before any data is read; library warnings
never come before the error line.

Each failing run: the documented exit code, exactly one `error:` line, no traceback, nothing on stdout, and every
file as it was (sha256)."""

import json
import struct
import warnings

import pytest
import torch
from conftest import tiny_gene
from safetensors.torch import load_file, save_file
from test_clobber import finetune_args, learn_args, refused, ws  # noqa: F401 (ws: fixture)


def _with_provenance(path, **provenance_json):
    """Rewrites the learngene at `path` with raw JSON text spliced into its provenance (NaN included)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    meta = json.loads(metadata["learngene"])
    raw = json.dumps(meta)
    extra = ", ".join(f"{json.dumps(k)}: {v}" for k, v in provenance_json.items())
    raw = raw.replace('"provenance": {', '"provenance": {' + extra + (", " if meta["provenance"] else ""), 1)
    save_file(tensors, str(path), metadata={**metadata, "learngene": raw})
    return path


# --- names and provenance are printed literally ---


def test_markup_in_an_output_name_is_printed_literally(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    (tmp_path / "d[").mkdir()
    out = tmp_path / "d[" / "x][bold]"  # -o 'd[/x][bold]': a closing tag for rich
    got, stdout, stderr = run_cli("expand", gene, "--depth", 2, "-o", out)
    assert got == 0, stderr
    assert f"wrote {out}/" in stdout and (out / "model.safetensors").is_file()


def test_provenance_markup_and_escape_sequences_are_shown_not_obeyed(run_cli, tmp_path):
    gene = _with_provenance(
        tiny_gene("tleg").save(tmp_path / "g.safetensors"),
        ancestor=json.dumps("[bold]x[/bold]"),
        data=json.dumps("\x1b[2J\x1b[31mred\nsecond line"),
    )
    got, stdout, stderr = run_cli("inspect", gene)
    assert got == 0, stderr
    assert "ancestor=[bold]x[/bold]" in stdout
    assert "data=\\x1b[2J\\x1b[31mred\\x0asecond line" in stdout
    assert "\x1b" not in stdout


def test_an_error_line_escapes_what_a_name_holds(run_cli, tmp_path):
    line = refused(run_cli, tmp_path, "inspect", tmp_path / "no\x1b[31mfile[/x]", code=3)
    assert "\x1b" not in line and "\\x1b[31mfile[/x]" in line


def test_a_non_utf8_output_name_works_and_prints(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    name = b"desc-\xff".decode("utf-8", "surrogateescape")  # what Python makes of such a command-line argument
    got, stdout, stderr = run_cli("expand", gene, "--depth", 2, "-o", tmp_path / name)
    assert got == 0, stderr
    assert "desc-\\xff" in stdout and (tmp_path / name / "config.json").is_file()  # the byte, as repr shows it


def test_a_name_too_long_for_the_filesystem_is_one_line(run_cli, tmp_path, ws):  # noqa: F811
    refused(
        run_cli, tmp_path, *learn_args(ws, "-o", tmp_path / ("n" * 300)), code=3, says="over this filesystem's limit"
    )


# --- --json is strict JSON ---


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_inspect_json_turns_nan_and_infinity_into_null(run_cli, tmp_path):
    gene = _with_provenance(tiny_gene("tleg").save(tmp_path / "g.safetensors"), top1="NaN", loss="-Infinity")
    got, stdout, stderr = run_cli("inspect", gene, "--json")
    assert got == 0, stderr
    provenance = _strict(stdout)["provenance"]
    assert provenance["top1"] is None and provenance["loss"] is None


def test_inspect_json_of_a_folder_with_nan_in_its_config(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    assert run_cli("expand", gene, "--depth", 2, "-o", tmp_path / "desc")[0] == 0
    config = json.loads((tmp_path / "desc" / "config.json").read_text())
    config["lgtool"]["score"] = float("nan")
    (tmp_path / "desc" / "config.json").write_text(json.dumps(config))  # json.dumps writes NaN
    got, stdout, stderr = run_cli("inspect", tmp_path / "desc", "--json")
    assert got == 0, stderr
    assert _strict(stdout)["lgtool"]["score"] is None


# --- safetensors headers are parsed as safetensors parses them ---


def _raw_safetensors(path, header_text: str, data: bytes = b""):
    raw = header_text.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    "header",
    [
        '{"__metadata__": {"format": "pt"}, "__metadata__": {"learngene": "{}"}}',
        '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        '"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
    ],
    ids=["metadata-twice", "tensor-twice"],
)
def test_a_header_with_a_key_twice_is_refused(run_cli, tmp_path, header):
    path = _raw_safetensors(tmp_path / "g.safetensors", header, b"\0" * 4 if '"w"' in header else b"")
    refused(run_cli, tmp_path, "inspect", path, code=3, says="appears twice")


def test_learngene_metadata_with_a_key_twice_is_refused(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    from safetensors import safe_open

    with safe_open(str(gene), "pt") as f:
        metadata = f.metadata()
    raw = metadata["learngene"]
    metadata["learngene"] = raw[:-1] + ', "method": "sws"}'
    save_file(load_file(str(gene)), str(gene), metadata=metadata)
    refused(run_cli, tmp_path, "inspect", gene, code=3, says="'method' twice")


# --- crafted config.json files ---


def _config_text(text: bytes):
    return lambda folder: (folder / "config.json").write_bytes(text)


def _config_edit(edit):
    def apply(folder):
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))

    return apply


CONFIGS = {
    "not-utf8": (_config_text(b'{"architecture": "vit\xff"}'), "not UTF-8"),
    "deeply-nested": (_config_text(b'{"architecture": "v", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nested"),
    "pretrained-cfg-a-list": (_config_edit(lambda c: c.update(pretrained_cfg=[1])), "pretrained_cfg must be"),
    "architecture-a-number": (_config_edit(lambda c: c.update(architecture=7)), "architecture must be"),
    "lineage-a-list": (_config_edit(lambda c: c.update(lgtool=[])), "lgtool must be a JSON object"),
    "mean-a-string": (_config_edit(lambda c: c["pretrained_cfg"].update(mean="0.5")), "mean must be a list"),
    "std-zero": (_config_edit(lambda c: c["pretrained_cfg"].update(std=[0])), "std must be positive"),
    "crop-pct-true": (_config_edit(lambda c: c["pretrained_cfg"].update(crop_pct=True)), "crop_pct"),
    "mean-of-3-channels": (
        _config_edit(lambda c: c["pretrained_cfg"].update(mean=[0.5, 0.5, 0.5])),
        "3 values for a model of 1 input channel",
    ),
}


@pytest.mark.parametrize("craft, says", CONFIGS.values(), ids=CONFIGS.keys())
def test_finetune_refuses_a_crafted_config_before_training(run_cli, tmp_path, ws, craft, says):  # noqa: F811
    craft(ws / "vit")
    refused(run_cli, tmp_path, *finetune_args(ws, "-o", tmp_path / "out"), code=3, says=says)


@pytest.mark.parametrize("name", ["not-utf8", "deeply-nested", "pretrained-cfg-a-list", "lineage-a-list"])
def test_inspect_refuses_a_crafted_config(run_cli, tmp_path, ws, name):  # noqa: F811
    CONFIGS[name][0](ws / "vit")
    refused(run_cli, tmp_path, "inspect", ws / "vit", code=3, says=CONFIGS[name][1])


# --- crafted --resume checkpoints ---


def _drop_group(state):
    state["optimizer"]["param_groups"].pop()


def _drop_tensor(state):
    state["model"].pop(next(iter(state["model"])))


CHECKPOINTS = {
    "empty-model": (lambda s: s.update(model={}), "no model state"),
    "model-a-list": (lambda s: s.update(model=[1, 2]), "no model state"),
    "model-of-strings": (lambda s: s["model"].update({"pos_embed": "x"}), "not a map of tensors"),
    "optimizer-groups": (_drop_group, "does not fit this run"),
    "rng-size": (lambda s: s.update(rng=torch.zeros(7, dtype=torch.uint8)), "random generator state"),
    "missing-tensor": (_drop_tensor, "does not fit this run"),
    "position-negative": (lambda s: s["position"].update(step=-1), "position"),
    "identity-a-list": (lambda s: s.update(identity=[]), "identity"),
}


@pytest.fixture
def checkpoint(run_cli, tmp_path, ws):  # noqa: F811
    """A real finetune checkpoint of the tiny ViT, outside the folders the crafted runs write."""
    assert run_cli(*finetune_args(ws, "-o", ws / "first"))[0] == 0
    return ws / "first" / "checkpoint.ckpt"


@pytest.mark.parametrize("craft, says", CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_resume_refuses_a_crafted_checkpoint_before_training(run_cli, tmp_path, ws, checkpoint, craft, says):  # noqa: F811
    state = torch.load(checkpoint, weights_only=True)
    craft(state)
    torch.save(state, tmp_path / "crafted.ckpt")
    args = ["finetune", ws / "vit", "--data-dir", ws / "fm", "--epochs", 2, "--batch-size", 16]
    refused(run_cli, tmp_path, *args, "--resume", tmp_path / "crafted.ckpt", "-o", tmp_path / "out", code=3, says=says)


# --- out-of-range requests are usage errors before any data is read ---

MISSING = "no-such-data"


@pytest.mark.parametrize(
    "command, options, says",
    [
        ("learn", ["--seed", 2**64], "--seed must be at least 0 and at most 9223372036854775807"),
        ("learn", ["--aux-depth", 100_000], "--aux-depth 100000 is more than lgtool builds"),
        ("learn", ["--width", 1_000_000_000], "width 1000000000 is more than lgtool builds"),
        ("learn", ["--img-size", 10**6], "--img-size 1000000 is more than lgtool builds"),
        ("finetune", ["--seed", 2**70], "--seed must be"),
        ("finetune", ["--init", "scratch", "--depth", 100_000], "--depth 100000 is more than lgtool builds"),
        ("finetune", ["--init", "scratch", "--width", "1e9"], "unknown width"),
    ],
    ids=["learn-seed-2^64", "aux-depth", "width", "img-size", "finetune-seed", "scratch-depth", "width-1e9"],
)
def test_out_of_range_requests_are_usage_errors_before_data(run_cli, tmp_path, command, options, says):
    if command == "learn":
        args = ["learn", "--ancestor", "fmnist-vit", "--data", tmp_path / MISSING, "-o", tmp_path / "g.safetensors"]
    else:
        args = ["finetune", "--data", tmp_path / MISSING, "-o", tmp_path / "out"]
    refused(run_cli, tmp_path, *args, *options, code=2, says=says)


def test_a_seed_beyond_2_to_the_32_trains(run_cli, tmp_path, ws):  # noqa: F811
    got, _, stderr = run_cli(*finetune_args(ws, "--seed", 2**63 - 1, "--mixup", 0.2, "-o", tmp_path / "out"))
    assert got == 0, stderr


# --- warnings never come before the error line ---


def test_library_warnings_are_dropped_on_an_error_and_kept_on_success(run_cli, tmp_path, monkeypatch):
    import lgtool.cli.inspect

    real = lgtool.cli.inspect.summarize

    def warns(path):
        warnings.warn("a library's deprecation notice", UserWarning, stacklevel=1)
        return real(path)

    monkeypatch.setattr(lgtool.cli.inspect, "summarize", warns)
    got, stdout, stderr = run_cli("inspect", tmp_path / "missing.safetensors")
    assert got == 3 and stdout == "" and stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1, stderr
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    got, stdout, stderr = run_cli("inspect", gene, "--json")
    assert got == 0 and "deprecation notice" in stderr and _strict(stdout)["kind"] == "learngene"


def test_a_learngene_of_mixed_float_dtypes_expands_in_the_wider_one(run_cli, tmp_path):
    gene = tiny_gene("wave")
    gene.tensors = {k: t.half() if i % 2 else t for i, (k, t) in enumerate(gene.tensors.items())}
    path = gene.save(tmp_path / "mixed.safetensors")
    got, stdout, stderr = run_cli("expand", path, "--check", "-o", tmp_path / "desc", "--json")
    assert got == 0, stderr
    assert _strict(stdout)["check"]["passed"]
    assert _strict(run_cli("inspect", tmp_path / "desc", "--json")[1])["dtypes"] == ["F32"]
