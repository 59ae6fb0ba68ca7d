"""The learngene artifact: one .safetensors file of unique template tensors plus one JSON metadata document.

    __metadata__ = {"format": "pt", "learngene": "<json: schema, method, arch, rule, tensors, input, provenance>"}

Readable without lgtool: `safetensors.safe_open(path, "pt").metadata()["learngene"]`.
Header reading (`read_header`) is torch-free so `inspect` never loads torch or weights.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lgtool import __version__
from lgtool.arch import Arch, parse_width
from lgtool.errors import InputError, UsageError
from lgtool.rules import RULES, rule_module, sws, tleg, wave

SCHEMA = "learngene/1"
METADATA_KEY = "learngene"
MAX_HEADER = 100 << 20  # safetensors' own limit

AnyRule = Annotated[sws.Rule | tleg.Rule | wave.Rule, Field(discriminator="method")]


class InputConfig(BaseModel):
    """How images are normalized for this family (becomes timm's pretrained_cfg of every Desc-Net)."""

    mean: list[float] = [0.485, 0.456, 0.406]
    std: list[float] = [0.229, 0.224, 0.225]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875


class GeneMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["learngene/1"] = Field(SCHEMA, alias="schema")
    method: Literal["sws", "tleg", "wave"]
    arch: Arch  # the Aux-Net; arch.depth is the Aux depth
    rule: AnyRule
    tensors: dict[str, dict[str, Any]]  # tensor name -> what it is (template/slot, stage/slot, nonblock key)
    input: InputConfig = InputConfig()
    provenance: dict[str, Any] = {}


@dataclass
class Learngene:
    meta: GeneMeta
    tensors: dict  # name -> torch.Tensor

    @property
    def method(self) -> str:
        return self.meta.method

    @property
    def arch(self) -> Arch:
        return self.meta.arch

    @property
    def rule(self):
        return self.meta.rule

    def num_params(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def save(self, path) -> Path:
        from safetensors.torch import save_file

        from lgtool.atomic import atomic_file

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.tensors.items()}
        metadata = {"format": "pt", METADATA_KEY: self.meta.model_dump_json(by_alias=True)}
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return Path(path)


def tensor_specs(meta_or_parts) -> dict:
    """Every tensor a learngene of this method/arch/rule holds: name -> (shape, role)."""
    method, arch, rule = meta_or_parts.method, meta_or_parts.arch, meta_or_parts.rule
    specs = dict(RULES[method].template_specs(rule, arch))
    for name, shape in arch.nonblock_shapes().items():
        specs[name] = (shape, {"nonblock": name})
    return specs


def init_learngene(
    method: str,
    *,
    width: str | int = "tiny",
    aux_depth: int | None = None,
    img_size: int = 224,
    patch_size: int = 16,
    in_chans: int = 3,
    num_classes: int = 1000,
    num_heads: int | None = None,
    mlp_ratio: float = 4.0,
    seed: int = 0,
    input: dict | None = None,
    **rule_options,
) -> Learngene:
    """A fresh learngene with the method's official initialization (templates) and timm's (the rest).

    Rule options: SWS `stages=[3,3,4,3,3]` or `num_stages`; WAVE `template_size`, `num_templates`."""
    import torch

    from lgtool.arch import build_vit

    rule_module(method)
    embed_dim, heads = parse_width(width, num_heads)
    rule, depth = _make_rule(method, aux_depth, embed_dim // heads, rule_options)
    arch = Arch(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        num_classes=num_classes,
    )
    if method == "wave":
        wave.check_width(rule, arch, embed_dim)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vit = build_vit(arch.model_copy(update={"depth": 0}))
        generator = torch.Generator().manual_seed(seed)
        tensors = {k: v.detach().clone() for k, v in vit.state_dict().items()}
        tensors.update(rule_module(method).init_templates(rule, arch, generator))
    meta = GeneMeta(
        method=method,
        arch=arch,
        rule=rule,
        tensors={},
        input=InputConfig(**(input or ({"mean": [0.5] * in_chans, "std": [0.5] * in_chans} if in_chans != 3 else {}))),
        provenance={
            "lgtool_version": __version__,
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    meta.tensors = {name: role for name, (_, role) in tensor_specs(meta).items()}
    return Learngene(meta, tensors)


def _make_rule(method, aux_depth, head_dim, options):
    try:
        if method == "sws":
            stages = options.pop("stages", None)
            num_stages = options.pop("num_stages", 5)
            if stages is None:
                stages = (
                    sws.even_stage_sizes(aux_depth, min(num_stages, aux_depth))
                    if aux_depth
                    else sws.DEFAULT_STAGE_SIZES
                )
            rule = sws.Rule(stage_sizes=list(stages), **options)
            if aux_depth is not None and aux_depth != sum(rule.stage_sizes):
                raise UsageError(f"--aux-depth {aux_depth} does not match the stage sizes {rule.stage_sizes}")
            return rule, sum(rule.stage_sizes)
        if method == "tleg":
            return tleg.Rule(**options), aux_depth or 12
        options.setdefault("template_size", head_dim)
        return wave.Rule(head_dim=head_dim, **options), aux_depth or 12
    except ValidationError as e:
        raise UsageError(f"bad {method} option: {_first_error(e)}") from None


def safetensors_header(path) -> tuple[dict, dict]:
    """Parse and sanity-check a safetensors header, torch-free: ({name: entry}, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n <= 0 or n > min(MAX_HEADER, size - 8):
            raise InputError(f"{path}: not a safetensors file (truncated or corrupt header)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"{path}: not a safetensors file (header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    try:
        end = max((v["data_offsets"][1] for v in header.values()), default=0)
    except (TypeError, KeyError, IndexError):
        raise InputError(f"{path}: corrupt safetensors header (bad tensor entry)") from None
    if end != size - 8 - n:
        raise InputError(f"{path}: truncated or corrupt: {size - 8 - n} data bytes, header describes {end}")
    return header, metadata


def read_header(path) -> tuple[dict, GeneMeta]:
    """Validate a learngene file from its header alone. Returns ({name: {dtype, shape}}, metadata)."""
    header, metadata = safetensors_header(path)
    if METADATA_KEY not in metadata:
        raise InputError(
            f"{path}: a safetensors file but not a learngene (no '{METADATA_KEY}' metadata); "
            "make one with `lgtool learn`"
        )
    try:
        raw = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError:
        raise InputError(f"{path}: learngene metadata is not valid JSON") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise InputError(f"{path}: unknown learngene schema {found!r}; this lgtool {__version__} reads {SCHEMA!r}")
    try:
        meta = GeneMeta.model_validate(raw)
    except ValidationError as e:
        raise InputError(f"{path}: invalid learngene metadata: {_first_error(e)}") from None
    infos = {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in header.items()}
    _check_tensors(path, meta, {k: tuple(v["shape"]) for k, v in infos.items()})
    return infos, meta


def _check_tensors(path, meta: GeneMeta, shapes: dict) -> None:
    if meta.method == "sws" and sum(meta.rule.stage_sizes) != meta.arch.depth:
        raise InputError(
            f"{path}: SWS stage sizes {meta.rule.stage_sizes} do not add up to the Aux depth {meta.arch.depth}"
        )
    expected = {k: tuple(s) for k, (s, _) in tensor_specs(meta).items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or extra or wrong:
        what = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {extra[0]}"
            if extra
            else f"{wrong[0]} has shape {list(shapes[wrong[0]])}, expected {list(expected[wrong[0]])}"
        )
        raise InputError(f"{path}: tensors do not match the metadata ({what})")


def load_learngene(path) -> Learngene:
    """Load and validate a learngene file (safetensors only; nothing is unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _, meta = read_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path}: cannot read tensors: {e}") from None
    return Learngene(meta, tensors)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]
