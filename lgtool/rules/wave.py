"""WAVE (Feng et al., CVPR 2025): shared weight templates, size-specific Kronecker scalers.

For each weight matrix type (qkv, proj, fc1, fc2) the learngene holds N templates T_t of w x w, shared
by every layer and every size. Layer l of a net gets

    W(l) = sum_t  S_t(l) (x) T_t                  (x) = Kronecker product, "scaler_outer" order

so W is a grid of template tiles, tile (i, j) weighted by the scaler entry S_t(l)[i, j]; a wider net
has a larger scaler grid, a deeper one more scaler sets, the templates stay the same.

WAVE has no public code; these choices are ours and are recorded in the artifact:
- w defaults to the head dim, and a new width must be a multiple of it; the head dim is kept fixed
  (heads = width / head dim), so qkv tiles stay aligned with heads.
- The Aux-Net's scalers and its per-layer vectors (biases, LayerNorms) are stored. A new size starts
  from them resampled: linearly in relative depth, linearly over the tile grid (q, k, v resampled
  separately), and scaled by (old / new grid columns) so a widened layer keeps its output scale.
  Vectors and the non-block tensors (patch/pos embedding, final norm, head inputs) are resampled the
  same way, tile by tile. Calibration (learning a size's scalers on a little data, templates frozen)
  starts from there.
"""

from math import gcd
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lgtool.base.arch import MAX_EMBED_DIM
from lgtool.base.errors import InputError
from lgtool.base.lazy import torch
from lgtool.rules.base import RuleOption, fresh_slot, sized_name

MATRICES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")
# qkv rows are three stacked matrices (q, k, v): resample each on its own.
ROW_GROUPS = {"attn.qkv.weight": 3, "attn.qkv.bias": 3}
MAX_TEMPLATES = 4096  # per matrix type; the paper uses a handful
DEFAULT_AUX_DEPTH = 12
OPTIONS = {  # what `learn` may set besides the Aux depth
    "template_size": RuleOption(int, "WAVE template side (default head dim).", lo=1, limit=MAX_EMBED_DIM),
    "num_templates": RuleOption(int, "WAVE templates per matrix type.", lo=1, limit=MAX_TEMPLATES),
}
LAYER_SOURCE = "WAVE position on the Aux depth axis"
SIZE_SPECIFIC = ("scaler",)  # a new size's scalers are learned (calibrated) with the templates frozen
NARROWS_BY_SELECTION = False  # it makes every width itself, from its templates
OFFICIAL = None  # no official code: `lgtool convert` has no checkpoint layout to read


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["wave"] = "wave"
    template_size: Annotated[int, Field(strict=True, ge=1, le=MAX_EMBED_DIM)]  # w: templates are w x w
    num_templates: Annotated[int, Field(strict=True, ge=1, le=MAX_TEMPLATES)] = 4  # N per matrix type
    head_dim: Annotated[int, Field(strict=True, ge=1, le=MAX_EMBED_DIM)]
    kron_order: Literal["scaler_outer"] = "scaler_outer"
    scaler_init: Literal["resample_aux"] = "resample_aux"


def make_rule(options: dict, aux_depth: int | None, head_dim: int) -> tuple[Rule, int]:
    """Templates of the head dim unless `template_size` says otherwise; 4 per matrix type by default."""
    return Rule(head_dim=head_dim, **{"template_size": head_dim, **options}), aux_depth or DEFAULT_AUX_DEPTH


def check_aux(rule: Rule, arch) -> None:
    if rule.head_dim != arch.head_dim:
        raise ValueError(f"rule.head_dim {rule.head_dim} is not the Aux-Net's head dim {arch.head_dim}")
    w = rule.template_size
    if arch.embed_dim % w or arch.mlp_hidden % w:
        raise ValueError(
            f"rule.template_size {w} does not divide both the Aux width {arch.embed_dim} "
            f"and its MLP width {arch.mlp_hidden}"
        )


def check_target(rule: Rule, aux, depth: int, width: int, layer_map: list[int] | None = None) -> None:
    check_width(rule, aux, width)
    if layer_map is not None:
        raise InputError("--layer-map picks SWS stages; a WAVE learngene has none")


# Tensor names: template.{slot} (N, w, w); scaler.{slot} (depth, N, rows / w, cols / w);
# layerwise.{slot} (depth, len) for the biases and LayerNorms of every layer.
def template_specs(rule: Rule, arch) -> dict:
    w, n = rule.template_size, rule.num_templates
    specs = {}
    for slot, shape in arch.slot_shapes().items():
        if slot in MATRICES:
            specs[f"template.{slot}"] = ((n, w, w), {"template": "template", "slot": slot})
            grid = (shape[0] // w, shape[1] // w)
            specs[f"scaler.{slot}"] = ((arch.depth, n, *grid), {"template": "scaler", "slot": slot})
        else:
            specs[f"layerwise.{slot}"] = ((arch.depth, *shape), {"template": "layerwise", "slot": slot})
    return specs


def init_templates(rule: Rule, arch, generator=None) -> dict:
    """Templates trunc-normal(0.02) and scalers N(0, 1/N), so a generated weight starts near timm's
    trunc-normal(0.02) scale; biases 0 and LayerNorms (1, 0) as in timm."""

    out = {}
    for name, (shape, role) in template_specs(rule, arch).items():
        if role["template"] == "template":
            out[name] = torch.nn.init.trunc_normal_(torch.empty(shape), std=0.02, generator=generator)
        elif role["template"] == "scaler":
            out[name] = torch.randn(shape, generator=generator) / rule.num_templates**0.5
        else:
            out[name] = fresh_slot(role["slot"], shape, generator)
    return out


def seed_templates(rule: Rule, arch, layers: list[dict], fresh: dict) -> tuple[dict, dict]:
    """Templates from an ancestor's layers (resampled to the Aux depth): for each matrix type the nearest
    sum of N Kronecker products (Van Loan-Pitsianis), per-layer vectors as they are. A tile matrix with fewer
    than N rows or columns fits fewer templates: the rest (and their scalers) keep `fresh`, the paper's init."""

    out, unseeded = {}, {}
    for slot in arch.slot_shapes():
        stack = resample(torch.stack([layer[slot] for layer in layers]), 0, arch.depth)
        if slot not in MATRICES:
            out[f"layerwise.{slot}"] = stack
            continue
        scalers, templates = nearest_kron(stack, rule.template_size, rule.num_templates)
        k = templates.shape[0]
        if k < rule.num_templates:
            scalers = torch.cat([scalers, fresh[f"scaler.{slot}"][:, k:]], dim=1)
            templates = torch.cat([templates, fresh[f"template.{slot}"][k:]])
            unseeded[f"template.{slot}"] = (
                f"{k} of {rule.num_templates} templates seeded (the tile matrix has rank {k} at most)"
            )
        out[f"scaler.{slot}"], out[f"template.{slot}"] = scalers, templates
    return out, unseeded


def nearest_kron(stack, w: int, n: int):
    """(scalers (L, k, r, c), templates (k, w, w)) whose `kron_weight` is the best rank-k fit of `stack`
    (L, r*w, c*w), k = n or the rank the tile matrix allows, if less.

    Rearranged into one row per tile (in `kron_weight`'s order), sum_t S_t (x) T_t is a rank-n matrix, so the
    truncated SVD gives the optimum: templates = top right singular vectors (unit norm), scalers = U * S."""

    depth, rows, cols = stack.shape
    r, c = rows // w, cols // w
    tiles = stack.reshape(depth, r, w, c, w).permute(0, 1, 3, 2, 4).reshape(depth * r * c, w * w)
    n = min(n, *tiles.shape)
    u, s, vh = torch.linalg.svd(tiles, full_matrices=False)
    scalers = (u[:, :n] * s[:n]).reshape(depth, r, c, n).permute(0, 3, 1, 2)
    return scalers.contiguous(), vh[:n].reshape(n, w, w).contiguous()


def check_width(rule: Rule, arch, width: int) -> None:
    step = _lcm(rule.template_size, rule.head_dim)
    if width % step or (width * arch.mlp_ratio) % rule.template_size:
        raise InputError(
            f"WAVE cannot make width {width}: it must be a multiple of {step} (template size and head dim)"
        )


def depths(rule: Rule, arch) -> tuple[int, int | None]:
    return 1, None


def widths(rule: Rule, arch) -> list[int] | str:
    return f"multiples of {_lcm(rule.template_size, rule.head_dim)}"


def layer_plan(rule: Rule, aux, target, layer_map=None) -> list[float]:
    """Where each layer sits on the Aux-Net's depth axis (its scalers are resampled from there)."""
    if target.depth == 1:
        return [0.0]
    return [round(i * (aux.depth - 1) / (target.depth - 1), 4) for i in range(target.depth)]


def kron_weight(scalers, templates):
    """sum_t S_t (x) T_t for all layers at once. scalers (L, N, r, c), templates (N, w, w) -> (L, r*w, c*w).

    One matmul instead of N Kronecker products, so nothing of size N x weight is ever materialized."""
    depth, n, r, c = scalers.shape
    w = templates.shape[-1]
    tiles = scalers.permute(0, 2, 3, 1).reshape(depth, r * c, n) @ templates.reshape(n, w * w)
    return tiles.reshape(depth, r, c, w, w).permute(0, 1, 3, 2, 4).reshape(depth, r * w, c * w)


def blocks(rule: Rule, tensors: dict, aux, target, layers: list[float]) -> list[dict]:
    """Every layer's weights at the target size: the scalers and per-layer vectors resampled there first, i.e.
    linearly interpolated at the Aux depth positions `layers` (the plan) gives."""
    own = resize(rule, {k: v for k, v in tensors.items() if k.startswith(("scaler.", "layerwise."))}, aux, target)
    own.update(trained_scalers(tensors, target))
    per_slot = {
        slot: kron_weight(own[f"scaler.{slot}"], tensors[f"template.{slot}"])
        if slot in MATRICES
        else own[f"layerwise.{slot}"]
        for slot in target.slot_shapes()
    }
    return [{slot: t[i] for slot, t in per_slot.items()} for i in range(target.depth)]


def nonblock(rule: Rule, tensors: dict, aux, target) -> dict:
    return resize(rule, {name: tensors[name] for name in target.nonblock_shapes()}, aux, target)


def trained_scalers(tensors: dict, target) -> dict:
    """`target`'s own scalers, where the learngene was trained at that size (`GeneMeta.sizes`); else none."""
    names = {f"scaler.{slot}": sized_name(target.depth, target.embed_dim, f"scaler.{slot}") for slot in MATRICES}
    return {name: tensors[stored] for name, stored in names.items() if stored in tensors}


def resize(rule: Rule, tensors: dict, aux, target) -> dict:
    """The learngene's size-specific tensors resampled from `aux` (the Aux size) to `target`."""
    if (target.depth, target.embed_dim) == (aux.depth, aux.embed_dim):
        return {k: v for k, v in tensors.items() if not k.startswith("sized.")}
    w, old, new = rule.template_size, aux.embed_dim, target.embed_dim
    out = {}
    for name, t in tensors.items():
        kind, _, slot = name.partition(".")
        if kind == "sized":  # another trained size's own tensors: not part of this one
            continue
        groups = ROW_GROUPS.get(slot, 1)
        if kind == "template":
            out[name] = t
        elif kind == "scaler":
            rows, cols = target.slot_shapes()[slot]
            t = resample(t, 0, target.depth)
            t = resample(t, 2, rows // w, groups=groups)
            t = resample(t, 3, cols // w)
            out[name] = t * (tensors[name].shape[3] / t.shape[3])  # keep the output scale
        elif kind == "layerwise":
            t = resample(t, 0, target.depth)
            out[name] = resample(t, 1, target.slot_shapes()[slot][0], groups=groups, tile=w)
        else:
            out[name] = _resize_nonblock(name, t, old, new, w)
    return out


def _resize_nonblock(name: str, t, old: int, new: int, w: int):
    if old == new:
        return t
    if name == "head.weight":
        return resample(t, 1, new, tile=w) * (old / new)
    if name == "head.bias":
        return t
    if name == "patch_embed.proj.weight":
        return resample(t, 0, new, tile=w)
    return resample(t, t.dim() - 1, new, tile=w)  # pos_embed, cls_token, norm, patch bias: channels last


def resample(x, dim: int, size: int, groups: int = 1, tile: int = 1):
    """Linearly resample axis `dim` to `size`, seen as `groups` runs of tiles of `tile` entries:
    tile positions are interpolated, the entries inside a tile are kept."""

    n = x.shape[dim]
    if n == size:
        return x
    x = x.movedim(dim, -1)
    lead = x.shape[:-1]
    tiles_in, tiles_out = n // (groups * tile), size // (groups * tile)
    y = x.reshape(-1, groups, tiles_in, tile).transpose(2, 3).reshape(-1, 1, tiles_in)
    y = torch.nn.functional.interpolate(y, size=tiles_out, mode="linear", align_corners=True)
    y = y.reshape(-1, groups, tile, tiles_out).transpose(2, 3).reshape(*lead, size)
    return y.movedim(-1, dim)


def _lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b)


def from_official(keys: list[str], model: str | None, options: dict) -> None:
    return None  # no official checkpoints
