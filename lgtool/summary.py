"""What `lgtool inspect` shows, as a plain dict: from safetensors headers and config.json only, no torch."""

from __future__ import annotations

from pathlib import Path

from lgtool.base.arch import Arch, numel
from lgtool.base.errors import InputError
from lgtool.base.header import safetensors_header
from lgtool.hub import CONFIG, WEIGHTS, read_config
from lgtool.learngene import read_header
from lgtool.rules import RULES


def summarize(path) -> dict:
    path = Path(path)
    if path.is_dir():
        return summarize_descnet(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return summarize_learngene(path)


def summarize_learngene(path: Path) -> dict:
    infos, meta = read_header(path)
    rule_mod = RULES[meta.method]
    params = sum(numel(i["shape"]) for i in infos.values())
    min_depth, max_depth = rule_mod.depths(meta.rule, meta.arch)
    family = range(min_depth, meta.arch.depth + 1)
    family_params = meta.arch.family_params(family.start, family.stop - 1)  # closed form: no loop over depths
    return {
        "path": str(path),
        "kind": "learngene",
        "schema": meta.schema_,
        "method": meta.method,
        "arch": meta.arch.model_dump(),
        "aux_depth": meta.arch.depth,
        "rule": meta.rule.model_dump(),
        "tensors": [
            {"name": k, "shape": v["shape"], "dtype": v["dtype"], "role": meta.tensors.get(k, {})}
            for k, v in infos.items()
        ],
        "params": params,
        "file_bytes": path.stat().st_size,
        "depths": {"min": min_depth, "max": max_depth},
        "widths": rule_mod.widths(meta.rule, meta.arch),
        # A rule of its own width only makes narrower ones by evenly spaced selection (heads kept by default), of
        # channels `learn` ordered by importance (`lgtool.order`) where its provenance says so.
        "narrower_widths": (
            {"max": meta.arch.embed_dim - 1, "multiple_of": meta.arch.num_heads, "by": _narrowed_by(meta)}
            if rule_mod.NARROWS_BY_SELECTION and meta.arch.embed_dim > 1
            else None
        ),
        "sizes": [list(size) for size in meta.sizes],  # trained with size-specific tensors of their own
        "storage_ratio": round(family_params / params, 3),
        "storage_ratio_depths": [family.start, family.stop - 1],
        "input": meta.input.model_dump(),
        "provenance": meta.provenance,
    }


def summarize_descnet(path: Path) -> dict:
    config = read_config(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise InputError(f"{path}: no {WEIGHTS} beside {CONFIG}")
    infos, _ = safetensors_header(weights)
    params = sum(numel(i["shape"]) for i in infos.values())
    args = config.get("model_args", {})
    try:
        expected = Arch(**args).num_params() if args else None
    except (TypeError, ValueError):
        expected = None
    return {
        "path": str(path),
        "kind": "descnet",
        "architecture": config["architecture"],
        "model_args": args,
        "num_classes": config.get("num_classes"),
        "params": params,
        "params_match_config": expected == params if expected is not None else None,
        "tensors": len(infos),
        "dtypes": sorted({i["dtype"] for i in infos.values()}),
        "file_bytes": weights.stat().st_size,
        "pretrained_cfg": config.get("pretrained_cfg", {}),
        "lgtool": config.get("lgtool"),
    }


def _narrowed_by(meta) -> str:
    ordered = "ordering" in (meta.provenance or {})
    return "evenly spaced selection" + (" of channels ordered by importance" if ordered else "")
