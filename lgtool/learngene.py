"""The learngene artifact: one .safetensors file of unique template tensors plus one JSON metadata document.

    __metadata__ = {"format": "pt", "learngene": "<json: schema, method, arch, rule, tensors, input, provenance>"}

Readable without lgtool: `safetensors.safe_open(path, "pt").metadata()["learngene"]`.
Header reading (`read_header`) is torch-free so `inspect` never loads torch or weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lgtool.base import __version__
from lgtool.base.arch import Arch, first_error, one_line, parse_width
from lgtool.base.atomic import atomic_file
from lgtool.base.errors import InputError, UsageError
from lgtool.base.header import FLOAT_DTYPES, DuplicateKey, entries, open_safetensors, unique_keys
from lgtool.base.lazy import lazy, timm, torch
from lgtool.base.normalization import Normalization
from lgtool.base.text import clean
from lgtool.rules import RULES, rule_module, sized_name

st = lazy("safetensors.torch")

SCHEMA = "learngene/1"
METADATA_KEY = "learngene"


class GeneMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["learngene/1"] = Field(SCHEMA, alias="schema")
    method: str  # one of RULES, and always rule.method (kept at the top level for readers of the JSON)
    arch: Arch  # the Aux-Net; arch.depth is the Aux depth
    rule: Any  # the method's Rule model, validated by its rule module
    tensors: dict[str, dict[str, Any]]  # tensor name -> what it is (template/slot, stage/slot, nonblock key)
    input: Normalization = Normalization()  # how images are normalized for this family (its Desc-Nets' too)
    # Sizes (depth, width) trained with size-specific tensors of their own (WAVE scalers, family-aware learn):
    # stored as sized.d{depth}w{width}.{name}; `expand` at one of them uses them instead of resampling.
    sizes: Annotated[list[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]], Field(max_length=4096)] = []
    provenance: dict[str, Any] = {}

    @field_validator("method")
    @classmethod
    def _known(cls, method):
        if method not in RULES:
            raise ValueError(f"unknown method {method!r}: choose {', '.join(RULES)}")
        return method

    @field_validator("rule", mode="before")
    @classmethod
    def _rule_model(cls, rule):
        """The rule's own model, picked by its `method` field."""
        if isinstance(rule, BaseModel):
            return rule
        if not isinstance(rule, dict) or not isinstance(rule.get("method"), str) or rule["method"] not in RULES:
            raise ValueError(f"rule.method must be one of {', '.join(RULES)}")
        return RULES[rule["method"]].Rule.model_validate(rule)

    @model_validator(mode="after")
    def _consistent(self):
        """What the fields say must agree: one method, a rule that fits the Aux-Net, one norm per channel."""
        arch, rule = self.arch, self.rule
        if self.method != rule.method:
            raise ValueError(f"method {self.method!r} disagrees with rule.method {rule.method!r}")
        RULES[rule.method].check_aux(rule, arch)
        self._check_sizes()
        for key in ("mean", "std"):
            if len(getattr(self.input, key)) != arch.in_chans:
                raise ValueError(
                    f"input.{key} has {len(getattr(self.input, key))} values for {arch.in_chans} input channels"
                )
        return self

    def _check_sizes(self) -> None:
        rules = RULES[self.method]
        if self.sizes and not rules.SIZE_SPECIFIC:
            raise ValueError(f"sizes: a {self.method.upper()} learngene has no size-specific tensors")
        if len(set(self.sizes)) != len(self.sizes) or (self.arch.depth, self.arch.embed_dim) in self.sizes:
            raise ValueError("sizes: each size once, and not the Aux size (its tensors are the learngene's own)")
        for depth, width in self.sizes:
            try:
                self.arch.resized(depth, width)
                rules.check_target(self.rule, self.arch, depth, width)
            except InputError as e:
                raise ValueError(f"sizes: ({depth}, {width}): {e}") from None


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
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.tensors.items()}
        # `sizes` only where a family-aware learn trained some: a single-size learngene's header stays minimal
        # provenance names files (the ancestor's); one whose name is not UTF-8 is kept with \xNN escapes
        meta = self.meta.model_copy(update={"provenance": clean(self.meta.provenance)})
        dump = meta.model_dump_json(by_alias=True, exclude=None if meta.sizes else {"sizes"})
        metadata = {"format": "pt", METADATA_KEY: dump}
        with atomic_file(path) as tmp:
            st.save_file(tensors, str(tmp), metadata=metadata)
        return Path(path)


def tensor_specs(meta_or_parts) -> dict:
    """Every tensor a learngene of this method/arch/rule holds: name -> (shape, role)."""
    method, arch, rule = meta_or_parts.method, meta_or_parts.arch, meta_or_parts.rule
    rules = RULES[method]
    specs = dict(rules.template_specs(rule, arch))
    for name, shape in arch.nonblock_shapes().items():
        specs[name] = (shape, {"nonblock": name})
    for depth, width in getattr(meta_or_parts, "sizes", ()):
        for name, (shape, role) in rules.template_specs(rule, arch.resized(depth, width)).items():
            if role.get("template") in rules.SIZE_SPECIFIC:
                specs[sized_name(depth, width, name)] = (shape, {**role, "size": [depth, width]})
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
    input: Normalization | dict | None = None,
    **rule_options,
) -> Learngene:
    """A fresh learngene with the method's official initialization (templates) and timm's (the rest).

    Rule options: SWS `stages=[3,3,4,3,3]` or `num_stages`; WAVE `template_size`, `num_templates`."""
    rule_module(method)
    embed_dim, heads = parse_width(width, num_heads)
    rule, depth = _make_rule(method, aux_depth, embed_dim // heads, rule_options)
    arch = Arch(  # an invalid one raises ArchError, an InputError
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        num_classes=num_classes,
    )
    try:
        meta = GeneMeta(
            method=method,
            arch=arch,
            rule=rule,
            tensors={},
            input=input or (Normalization() if in_chans == 3 else Normalization.plain(in_chans)),
            provenance={
                "lgtool_version": __version__,
                "seed": seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    except ValidationError as e:
        raise InputError(f"cannot make this learngene: {first_error(e)}") from None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tensors = _timm_nonblock(arch)
        tensors.update(rule_module(method).init_templates(rule, arch, torch.Generator().manual_seed(seed)))
    meta.tensors = {name: role for name, (_, role) in tensor_specs(meta).items()}
    return Learngene(meta, tensors)


def _timm_nonblock(arch: Arch) -> dict:
    """timm's initialization of the tensors outside the blocks, from a VisionTransformer with no blocks at all
    (timm builds one of depth 0; an `Arch`, always a net that runs, has at least one layer)."""
    with torch.device("cpu"):
        vit = timm.models.vision_transformer.VisionTransformer(**{**arch.model_args(), "depth": 0})
    return {k: v.detach().clone() for k, v in vit.state_dict().items()}


def check_rule_options(method: str, aux_depth: int | None, options: dict) -> None:
    """The rule options as typed, before any data is read: one the method does not take, or that does not
    fit the Aux depth, is a usage error. (A placeholder head dim: only options that set it are checked.)"""
    rule_depth(method, aux_depth, options)


def rule_depth(method: str, aux_depth: int | None, options: dict) -> int:
    """The Aux depth of a `method` learngene with these rule options: `aux_depth`, else its rule's default (SWS:
    the sum of its stage sizes). No rule's depth depends on the head dim, so a placeholder one serves."""
    return _make_rule(method, aux_depth, 64, dict(options))[1]


def _make_rule(method, aux_depth, head_dim, options):
    rules = RULES[method]
    unknown = sorted(set(options) - set(rules.OPTIONS))
    if unknown:
        takes = ", ".join(rules.OPTIONS) or "only the Aux depth"
        raise UsageError(f"{unknown[0]} does not apply to a {method.upper()} learngene (it takes {takes})")
    try:
        return rules.make_rule(options, aux_depth, head_dim)
    except ValidationError as e:
        raise UsageError(f"bad {method} option: {first_error(e)}") from None


def read_header(path) -> tuple[dict, GeneMeta]:
    """Validate a learngene file from its header alone, torch-free. Returns ({name: {dtype, shape}}, metadata)."""
    with open_safetensors(path) as (f, _):
        return _checked_header(path, f)


def _checked_header(path, f) -> tuple[dict, GeneMeta]:
    """The learngene header of an open safetensors file (`open_safetensors`: the file's own checks passed)."""
    metadata = f.metadata() or {}
    if METADATA_KEY not in metadata:
        raise InputError(
            f"{path}: a safetensors file but not a learngene (no '{METADATA_KEY}' metadata); "
            "make one with `lgtool learn`"
        )
    try:
        raw = json.loads(metadata[METADATA_KEY], object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"{path}: learngene metadata is not valid JSON") from None
    except DuplicateKey as e:
        raise InputError(f"{path}: learngene metadata has the key {str(e)!r} twice") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise InputError(f"{path}: unknown learngene schema {found!r}; this lgtool {__version__} reads {SCHEMA!r}")
    try:
        meta = GeneMeta.model_validate(raw)
    except ValidationError as e:
        raise InputError(f"{path}: invalid learngene metadata: {first_error(e)}") from None
    infos = entries(f)
    _check_tensors(path, meta, infos)
    return infos, meta


def _check_tensors(path, meta: GeneMeta, infos: dict) -> None:
    """The file's tensors are floating point, exactly the ones the metadata lists, of the shapes its arch
    and rule imply and with the roles the rule gives them. Costs a few dozen dict entries (the specs of one
    block per template, never one per layer), and no tensor is read."""
    bad = next((k for k, v in infos.items() if v["dtype"] not in FLOAT_DTYPES), None)
    if bad is not None:
        raise InputError(
            f"{path}: tensor {one_line(bad)} is {infos[bad]['dtype']!r}; a learngene holds floating-point tensors "
            f"({', '.join(FLOAT_DTYPES)})"
        )
    listed, stored = set(meta.tensors), set(infos)
    if listed != stored:
        what = (
            f"the metadata lists {one_line(min(listed - stored))}, the file lacks it"
            if listed - stored
            else f"the file holds {one_line(min(stored - listed))}, the metadata does not list it"
        )
        raise InputError(f"{path}: tensors do not match the metadata ({what})")
    shapes = {k: tuple(v["shape"]) for k, v in infos.items()}
    specs = tensor_specs(meta)
    expected = {k: tuple(s) for k, (s, _) in specs.items()}
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
        raise InputError(f"{path}: tensors do not match the metadata ({one_line(what)})")
    # What each tensor is (`inspect` groups by it): exactly what the rule says, nothing made up.
    bad_role = next((k for k, (_, role) in specs.items() if meta.tensors[k] != role), None)
    if bad_role is not None:
        raise InputError(
            f"{path}: tensors do not match the metadata (role of {bad_role} is "
            f"{one_line(json.dumps(meta.tensors[bad_role]))}, expected {json.dumps(specs[bad_role][1])})"
        )


def load_learngene(path) -> Learngene:
    """Load and validate a learngene file (safetensors only; nothing is unpickled): its header in full, then
    every tensor finite (a NaN or Inf would only surface later as a broken Desc-Net or a NaN loss)."""
    return read_learngene(path)[0]


def read_learngene(path, checked: tuple[dict, GeneMeta] | None = None) -> tuple[Learngene, str]:
    """`load_learngene`, and the sha256 of the file. One descriptor gives the header and the tensors (safetensors
    opens the file by it, on Linux) and the digest (a map of it): all are of one file. The digest is a second pass
    over the bytes, from the page cache: a 91 MB learngene still reads in 0.19 s (median), as with the one map it
    replaced, and its peak memory grows by the file's size, as before. `checked`: what `read_header(path)` gave
    for it before (a command's plan); the file must hold the same header still."""
    with open_safetensors(path, "pt") as (f, fd):
        infos, meta = _checked_header(path, f)
        if checked is not None and (infos, meta) != checked:
            raise InputError(f"{path}: changed while lgtool was reading it; run the command again")
        tensors = {name: f.get_tensor(name) for name in infos}
        digest = _sha256(fd)
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise InputError(
            f"{path}: tensor {one_line(bad)} holds NaN or Inf values; a learngene's tensors must be finite "
            "(learn it again, e.g. with a lower --lr)"
        )
    return Learngene(meta, _one_float_dtype(tensors)), digest


def _sha256(fd: int) -> str:
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:  # cheaper than reads into buffers (no copies)
        return hashlib.sha256(data).hexdigest()


def _one_float_dtype(tensors: dict) -> dict:
    """Tensors of mixed float dtypes (F16 templates beside F32 scalers, say) in the one dtype torch would
    compute them in: WAVE's Kronecker products, unlike sums, refuse to mix them."""
    floats = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floats) < 2:
        return tensors
    common = functools.reduce(torch.promote_types, floats)
    return {k: t.to(common) if t.is_floating_point() else t for k, t in tensors.items()}


def first_nonfinite(tensors: dict) -> str | None:
    """The first name (in sorted order) whose tensor holds a NaN or an Inf, or None if all are finite."""
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue
        # A sum is finite whenever every element is (one pass, no mask); only a sum that overflowed or
        # met a NaN/Inf needs the exact, element-wise look.
        if not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
            return name
    return None
