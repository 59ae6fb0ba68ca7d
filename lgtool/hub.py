"""The Desc-Net folder: timm's hub layout, loadable by plain timm with no lgtool import.

DIR/model.safetensors   exactly the timm state-dict keys, every block its own tensors
DIR/config.json         timm's hub config (+ a top-level "lgtool" lineage object timm ignores)
DIR/README.md           a model card

timm.create_model("local-dir:DIR", pretrained=True)
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from lgtool.base import __version__
from lgtool.base.arch import Arch
from lgtool.base.atomic import atomic_dir
from lgtool.base.errors import InputError
from lgtool.base.header import WRITE_ORDER, encode_header
from lgtool.base.lazy import lazy, torch
from lgtool.base.normalization import Normalization
from lgtool.base.text import clean, text
from lgtool.family import selection_source
from lgtool.rules import RULES

st = lazy("safetensors.torch")

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
WEIGHT_SELECTION = "weight-selection"  # the "route" of a Desc-Net cut from an ancestor (`selection_lineage`)
LAYER_WORDS = {
    "first": "the ancestor's first blocks, as the paper does; past its depth, its blocks repeated evenly",
    "spaced": "evenly spaced ancestor blocks; past its depth, its blocks repeated evenly",
}


def hub_config(arch: Arch, input_cfg: Normalization | dict, lineage: dict) -> dict:
    pretrained_cfg = {
        "input_size": [arch.in_chans, arch.img_size, arch.img_size],
        **Normalization.model_validate(input_cfg).pretrained_cfg(),
        "num_classes": arch.num_classes,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return {
        "architecture": arch.timm_name(),
        "num_classes": arch.num_classes,
        "num_features": arch.embed_dim,
        "global_pool": arch.global_pool,
        "model_args": arch.model_args(),
        "pretrained_cfg": pretrained_cfg,
        "lgtool": lineage,
    }


def write_descnet(
    state: dict, arch: Arch, out_dir, input_cfg: Normalization | dict, lineage: dict, force: bool = False, verify=None
) -> Path:
    """Write a state dict (timm keys) and its config and card into `out_dir`, atomically (a temporary
    folder renamed into place). The weights are written tensor by tensor (`save_tensors`): tensors may share
    memory. `verify(folder)` runs on the finished temporary folder first: if it
    raises, nothing appears under `out_dir`. The caller checks `out_dir` before any work (`check_output`, once);
    the final rename then keeps whatever appeared there since (`lgtool.base.atomic`)."""
    out_dir = Path(out_dir)
    config = clean(hub_config(arch, input_cfg, lineage))  # a file name that is not UTF-8 is written with \xNN escapes
    with atomic_dir(out_dir, force=force) as tmp:
        save_tensors(state, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / CARD).write_text(model_card(config, text(out_dir.name)), encoding="utf-8")
        if verify is not None:
            verify(tmp)
    return out_dir


# torch's dtype names -> safetensors' (those whose place in the file `WRITE_ORDER` knows)
SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "complex64": "C64",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32",
    "uint16": "U16", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
}  # fmt: skip


def save_tensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """`tensors` as a safetensors file at `path`: the bytes `safetensors.torch.save_file` writes (metadata of
    one key or none; it orders several at random), written tensor by tensor from each tensor's own memory. Nothing
    is copied whole first, and tensors that share memory or slice a larger tensor (SWS's repeated stages, WAVE's
    per-layer stacks) are written as they are, so a Desc-Net is never held twice to be saved. A value may also be
    a tensor built when its turn comes (a `materialize.Later`: called, it gives the tensor its dtype and shape say).

    A dtype without a known place in the file, or a big-endian machine: `save_file` itself, on copies."""
    names = {k: SAFETENSORS_DTYPES.get(str(v.dtype).removeprefix("torch.")) for k, v in tensors.items()}
    if sys.byteorder != "little" or None in names.values() or not set(names.values()) <= set(WRITE_ORDER):
        own = {k: _built(v).detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
        st.save_file(own, str(path), metadata=metadata)
        return
    entries = {k: (names[k], tuple(v.shape), math.prod(v.shape) * v.dtype.itemsize) for k, v in tensors.items()}
    header, spans = encode_header(entries, metadata)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
    try:
        _write_all(fd, header)
        for name, begin, end in spans:
            t = _built(tensors[name])
            if t.dtype != tensors[name].dtype or t.shape != tensors[name].shape:
                raise RuntimeError(f"{name}: built as {t.dtype} {tuple(t.shape)}, announced otherwise")
            data = _raw_bytes(t)
            if len(data) != end - begin:  # a tensor changed while it was written
                raise RuntimeError(f"{name}: {len(data)} bytes, its header entry says {end - begin}")
            _write_all(fd, data)
            del t, data  # a tensor built for the file is freed before the next is built
    finally:
        os.close(fd)


def _built(value):
    """A tensor, or one built now (a `materialize.Later`)."""
    return value if isinstance(value, torch.Tensor) else value()


def _raw_bytes(t) -> memoryview:
    """A tensor's elements as bytes in memory order (a contiguous copy only for a tensor that is not contiguous)."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.device.type != "cpu":
        t = t.to("cpu")
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def _write_all(fd: int, data) -> None:
    """os.write until every byte is written (a write may take fewer); a refusal (ENOSPC, EIO) is its OSError."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def read_config(path) -> dict:
    """config.json of a Desc-Net (or any timm hub-layout) folder, torch-free."""
    path = Path(path)
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise InputError(f"{path}: not a model folder (no {CONFIG})")
    try:
        config = json.loads(cfg_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{cfg_path}: not UTF-8 text, so not a timm hub config") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{cfg_path}: JSON nested too deeply to be a timm hub config") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise InputError(f"{cfg_path}: not a timm hub config (no 'architecture')")
    _check_config(config, cfg_path)
    return config


_CONFIG_TYPES = {"architecture": str, "model_args": dict, "pretrained_cfg": dict, "lgtool": dict}
_JSON_NAMES = {str: "string", dict: "object", list: "list", int: "number", float: "number", bool: "boolean"}


def _check_config(config: dict, cfg_path: Path) -> None:
    """The fields lgtool reads, of the types timm writes: a crafted file is one line, not a crash later."""
    for key, kind in _CONFIG_TYPES.items():
        if key in config and not isinstance(config[key], kind):
            found = _JSON_NAMES.get(type(config[key]), type(config[key]).__name__)
            if key == "model_args":
                raise InputError(f"{cfg_path}: no model_args object (the ViT's timm arguments), a JSON {found} instead")
            raise InputError(f"{cfg_path}: {key} must be a JSON {_JSON_NAMES[kind]}, not a {found}")
    Normalization.from_pretrained_cfg(config.get("pretrained_cfg", {}), where=str(cfg_path))


def check_channels(config: dict, in_chans: int, folder) -> None:
    """A config's mean and std have one value per input channel of its model (or one for all)."""
    for key in ("mean", "std"):
        values = config.get("pretrained_cfg", {}).get(key)
        if values is not None and len(values) not in (1, in_chans):
            raise InputError(
                f"{folder}/{CONFIG}: pretrained_cfg.{key} has {len(values)} values for a model of "
                f"{in_chans} input channel{'s' if in_chans != 1 else ''}"
            )


def model_card(config: dict, name: str) -> str:
    lg = config.get("lgtool", {})
    args = config["model_args"]
    method = lg.get("method", "")
    overlay_args = ", ".join(f"{k}={v!r}" for k, v in args.items())
    tags = ["learngene", method or "lgtool"]
    if method:
        origin = f"initialized by [lgtool](https://pypi.org/project/lgtool/) from a {method.upper()} learngene"
        lineage_md = _learngene_lineage(lg, args)
    elif lg.get("route") == WEIGHT_SELECTION:
        origin = (
            f"initialized by [lgtool](https://pypi.org/project/lgtool/) by weight selection from `{lg.get('ancestor')}`"
        )
        lineage_md, tags = _selection_lineage(lg, args), ["weight-selection", "lgtool"]
    else:
        origin = f"trained by lgtool (init: {lg.get('init', 'unknown')})"
        lineage_md = ""
    tuned = lg.get("finetune")
    if tuned:
        origin += (
            f", then fine-tuned on {tuned['data']} for {tuned['epochs']} epochs (held-out top-1 {tuned['top1']:.4f})"
        )
    tag_lines = "".join(f"- {tag}\n" for tag in tags)
    return f"""---
library_name: timm
tags:
- image-classification
- timm
{tag_lines}---
# {name}

A Vision Transformer (timm `VisionTransformer`, depth {args["depth"]}, width {args["embed_dim"]},
{args["num_heads"]} heads, {args["num_classes"]} classes) {origin}.

## Usage

```python
import timm
model = timm.create_model("local-dir:{name}", pretrained=True)
# or, with the weights file alone:
model = timm.create_model("{config["architecture"]}", pretrained=True,
    pretrained_cfg_overlay=dict(file="{name}/model.safetensors", num_classes={args["num_classes"]}),
    {overlay_args})
```

{lineage_md}"""


def _layer_table(lg: dict) -> str:
    rows = "\n".join(f"| {i} | {src} |" for i, src in enumerate(lg.get("layers", [])))
    return f"""| layer | initialized from ({lg.get("layer_source", "")}) |
|---|---|
{rows}
"""


def _learngene_lineage(lg: dict, args: dict) -> str:
    return f"""## Lineage

- learngene: `{lg.get("learngene", "?")}` (sha256 `{lg.get("learngene_sha256", "?")[:16]}…`)
- method: {lg["method"]}; Aux-Net depth {lg.get("aux_depth", "?")}, width {lg.get("aux_width", "?")}
- width {args["embed_dim"]} ({args["num_heads"]} heads): {lg.get("width_source", "the learngene's rule")}
- head: {lg.get("head", "?")}

{_layer_table(lg)}"""


def _selection_lineage(lg: dict, args: dict) -> str:
    digest = lg.get("ancestor_sha256")
    weights = (
        f"sha256 `{digest[:16]}…`"
        if isinstance(digest, str)
        else f"sha256 unknown: {lg.get('ancestor_sha256_missing')}"
    )
    return f"""## Lineage

- ancestor: `{lg.get("ancestor", "?")}` ({weights})
- ancestor size: depth {lg.get("ancestor_depth", "?")}, width {lg.get("ancestor_width", "?")}
- route: weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024): {lg.get("rule", "")}
- layers: {lg.get("layer_policy", "?")} ({LAYER_WORDS.get(lg.get("layer_policy"), "")})
- width {args["embed_dim"]} ({args["num_heads"]} heads): {lg.get("width_source", "?")}
- head: {lg.get("head", "?")}

{_layer_table(lg)}"""


def selection_lineage(
    ancestor: str, digest: tuple[str | None, str | None], source: Arch, target: Arch, done: dict
) -> dict:
    """What a weight-selected Desc-Net came from, stored under config.json's "lgtool" key and shown in its card:
    the ancestor as given, `digest` (its weights file's sha256, or None and why not), its architecture `source`,
    and `done`, what `weight_selection` did for `target`."""
    sha256, missing = digest
    narrowed = target.embed_dim < source.embed_dim
    if target.num_classes == 0:
        head = "none (0 classes)"
    elif done["head"] == "selected":
        head = "kept from the ancestor (same labels)"
    else:
        head = f"fresh (timm init, {target.num_classes} classes; the ancestor has {source.num_classes})"
    return {
        "route": WEIGHT_SELECTION,
        "ancestor": ancestor,
        "ancestor_sha256": sha256,
        **({"ancestor_sha256_missing": missing} if sha256 is None else {}),
        "ancestor_depth": source.depth,
        "ancestor_width": source.embed_dim,
        "rule": "every tensor cut from the ancestor's same-named one by evenly spaced indices along every dimension",
        "layer_policy": done["layer_policy"],
        "layer_source": f"ancestor block, {done['layer_policy']}",
        "layers": done["layers"],
        "width_source": (
            f"evenly spaced selection from width {source.embed_dim}"
            if narrowed
            else f"the ancestor's width {source.embed_dim}"
        ),
        "head": head,
        "lgtool_version": __version__,
    }


def lineage(meta, gene_path, sha256: str, target: Arch, layers: list) -> dict:
    """What a Desc-Net came from, stored under config.json's "lgtool" key and shown in its card: the learngene's
    metadata `meta`, its file and that file's `sha256`, and `layers`, the rule's layer plan for `target`."""
    same_head = target.num_classes == meta.arch.num_classes
    source = selection_source(meta, target.embed_dim)
    extra = {}
    if (target.depth, target.embed_dim) in meta.sizes:  # family-aware WAVE: this size trained its own
        extra["size_specific"] = "trained at this size (family-aware learn): no calibration needed"
    if source is not None:
        extra["selection"] = {
            "from_width": source,
            "to_width": target.embed_dim,
            "rule": "evenly spaced indices along every dimension of every tensor (weight selection, Xu et al. 2024)",
        }
        if "ordering" in (meta.provenance or {}):  # learn put the most important units where selection looks first
            extra["selection"]["order"] = "channels ordered by importance when the learngene was learned"
    method = meta.method
    return {
        "method": method,
        "learngene": Path(gene_path).name,
        "learngene_sha256": sha256,
        "aux_depth": meta.arch.depth,
        "aux_width": meta.arch.embed_dim,
        "layer_source": RULES[method].LAYER_SOURCE,
        "layers": layers,
        "width_source": (
            f"evenly spaced selection from the {source}-wide Desc-Net (weight selection's rule, not the "
            f"{method.upper()} method's)"
            if source is not None
            else f"the {method.upper()} method"
        ),
        **extra,
        "head": "copied from the learngene" if same_head else f"fresh (timm init, {target.num_classes} classes)",
        "lgtool_version": __version__,
        "provenance": meta.provenance,
    }
