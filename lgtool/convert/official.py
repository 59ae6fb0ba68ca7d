"""What an official Aux-Net checkpoint holds, read safely: its weights, its training args, which method's
layout its blocks are in, and the timm architecture its tensor shapes give.

The official training scripts (DeiT's main.py) save `checkpoint.pth` = {model, optimizer, lr_scheduler, epoch,
model_ema, scaler, args}, `args` an argparse.Namespace. The Aux-Net's non-block tensors carry timm's names
(patch_embed.proj.*, pos_embed, norm.*, head.*); its block tensors are in the method's own layout, which the
rule module reads (`from_official`). Nothing is unpickled beyond tensors, containers and that Namespace:
`torch.load(weights_only=True)` with only argparse.Namespace allowed.
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path

from lgtool.base.arch import WIDTHS, Arch, one_line
from lgtool.base.compat import utf8_path
from lgtool.base.errors import InputError, LgtoolError, UsageError
from lgtool.base.header import safetensors_header
from lgtool.base.lazy import lazy, torch
from lgtool.rules import RULES

safetensors_torch = lazy("safetensors.torch")

NONBLOCK = ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed", "norm.weight", "norm.bias")
HEAD = ("head.weight", "head.bias")
# What the official model names say: aux_deit_small_patch16_224[_L16_33433] -> width 384, patch 16, image 224.
MODEL_NAME = re.compile(r"(?:aux_)?deit_(tiny|small|base)_patch(\d+)_(\d+)(?:_.*)?")


def methods_with_official_code() -> list[str]:
    return [m for m, rule in RULES.items() if rule.OFFICIAL]


def load_checkpoint(path: Path):
    """The file's contents, loaded safely: safetensors, or torch.load with weights_only=True and only
    argparse.Namespace allowed beyond tensors and containers. A file that needs anything else is refused
    before any of it runs."""
    if path.suffix == ".safetensors":
        safetensors_header(path)  # a one-line InputError for a bad header
        with utf8_path(path) as named:  # safetensors takes UTF-8 names only
            return safetensors_torch.load_file(str(named))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs = re.search(r"GLOBAL ([\w.]+)", str(e))
        if needs:
            raise InputError(
                f"{path}: refused: loading it would run pickled code ({needs[1]}); lgtool loads tensors, containers "
                "and argparse.Namespace only, and nothing in the file ran"
            ) from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # truncated zip, garbage bytes, an empty file: torch raises many kinds
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})") from None


def state_dict(path: Path, payload, ema: bool) -> tuple[dict, dict | None]:
    """(state dict, the training checkpoint around it or None for a plain state dict)."""
    if not isinstance(payload, dict):
        raise InputError(f"{path}: holds a {type(payload).__name__}, not a checkpoint or a state dict")
    if "model" in payload and isinstance(payload["model"], dict):
        key = "model_ema" if ema else "model"
        if not isinstance(payload.get(key), dict) or not payload[key]:
            raise InputError(f"{path}: --ema, but the checkpoint holds no model_ema weights (it has {_keys(payload)})")
        return _tensors(path, payload[key], key), payload
    if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        if ema:
            raise InputError(f"{path}: --ema needs a training checkpoint with model_ema; this is a plain state dict")
        return _tensors(path, payload, "state dict"), None
    raise InputError(f"{path}: a dict with {_keys(payload)}; expected a checkpoint with 'model' or a state dict")


def _tensors(path, state: dict, what: str) -> dict:
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise InputError(f"{path}: {what} entry {one_line(str(bad))!r} is a {type(state[bad]).__name__}, not a tensor")
    return {str(k): v for k, v in state.items()}


def training_args(container: dict | None) -> dict:
    args = (container or {}).get("args")
    return dict(vars(args)) if isinstance(args, argparse.Namespace) else {}


def detect(path: Path, state: dict, model, options: dict, method: str | None) -> tuple[str, dict]:
    """Which official layout the block keys are in: --method's, or the one rule that reads them."""
    keys = sorted(k for k in state if k.startswith("blocks.block."))
    candidates = [method] if method else methods_with_official_code()
    for m in candidates:
        found = RULES[m].from_official(keys, model, options)
        if found is not None:
            extra = sorted(set(state) - set(found["names"].values()) - set(NONBLOCK) - set(HEAD))
            if extra:
                raise InputError(
                    f"{path}: an official {m.upper()} Aux-Net holds no {one_line(extra[0])}"
                    + (" (a class token: the Aux-Nets pool tokens without one)" if extra[0] == "cls_token" else "")
                )
            return m, found
    other = next((m for m in methods_with_official_code() if m != method and _reads(m, keys, model)), None)
    if method and other:
        raise InputError(f"{path}: --method {method}, but its blocks are in the official {other.upper()} layout")
    raise InputError(f"{path}: not an official {' or '.join(m.upper() for m in candidates)} Aux-Net: {_found(state)}")


def _reads(method: str, keys: list[str], model) -> bool:
    """Whether `method`'s official layout is the one these keys are in (its settings aside)."""
    try:
        return RULES[method].from_official(keys, model, {}) is not None
    except LgtoolError:  # the layout matched; only a setting (e.g. stage sizes) was missing
        return True


def _found(state: dict) -> str:
    """What a state dict that is no Aux-Net holds, in a few words."""
    if any(re.match(r"blocks\.\d+\.", k) for k in state):
        return "it holds per-layer timm ViT weights (blocks.0.*); use it as `learn --ancestor`, not convert"
    if any(k.startswith(("stage0.", "intercept.", "template.")) for k in state):
        return "it holds lgtool learngene tensors; it needs no conversion"
    block = sorted(k for k in state if k.startswith("blocks.block."))
    sample = ", ".join(one_line(k) for k in (block or sorted(state))[:3])
    return f"found {len(state)} tensors ({sample}{', ...' if len(state) > 3 else ''})"


def aux_arch(path: Path, state: dict, names: dict, found: dict, args: dict, num_heads: int | None) -> Arch:
    """The Aux-Net's timm arguments, from the tensor shapes, checked against the checkpoint's args."""
    for key in NONBLOCK:
        if key not in state:
            raise InputError(f"{path}: not a complete Aux-Net: {key} is missing")
    patch = state["patch_embed.proj.weight"]
    if patch.dim() != 4 or patch.shape[2] != patch.shape[3]:
        raise InputError(f"{path}: patch_embed.proj.weight has shape {list(patch.shape)}, not (width, chans, p, p)")
    width, chans, p = patch.shape[0], patch.shape[1], patch.shape[2]
    pos = state["pos_embed"]
    grid = math.isqrt(pos.shape[1]) if pos.dim() == 3 else 0
    if pos.dim() != 3 or grid * grid != pos.shape[1]:
        raise InputError(f"{path}: pos_embed has shape {list(pos.shape)}, not a square grid of patch tokens")
    classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    fc1 = state[names[next(n for n in names if n.endswith("mlp.fc1.weight"))]]
    qkv_bias = any(n.endswith("attn.qkv.bias") for n in names)
    heads = _heads(path, args, found["num_heads"], num_heads)
    seen = {"img_size": grid * p, "patch_size": p, "embed_dim": width, "num_classes": classes}
    claimed = _claimed(args)
    wrong = next((k for k, v in claimed.items() if k in seen and seen[k] != v), None)
    if wrong is not None:
        raise InputError(
            f"{path}: the tensors give {wrong} {seen[wrong]} but the checkpoint's args say {claimed[wrong]} "
            f"({'model ' + args['model'] if wrong in ('patch_size', 'embed_dim') else 'args'}); not this Aux-Net"
        )
    if "model" in args and MODEL_NAME.fullmatch(str(args["model"])) and (not qkv_bias or fc1.shape[0] != 4 * width):
        raise InputError(f"{path}: model {args['model']} has qkv bias and MLP ratio 4; these tensors do not")
    if width % heads:
        raise UsageError(f"{path}: width {width} is not divisible by {heads} heads; check --num-heads")
    return Arch(
        img_size=grid * p,
        patch_size=p,
        in_chans=chans,
        embed_dim=width,
        depth=found["aux_depth"],
        num_heads=heads,
        mlp_ratio=fc1.shape[0] / width,
        qkv_bias=qkv_bias,
        num_classes=classes,
    )


def _claimed(args: dict) -> dict:
    """What the checkpoint's args say about the architecture (image size, classes; width and patch from the
    official model name)."""
    claimed = {}
    if isinstance(args.get("input_size"), int):
        claimed["img_size"] = args["input_size"]
    if isinstance(args.get("nb_classes"), int):
        claimed["num_classes"] = args["nb_classes"]
    named = MODEL_NAME.fullmatch(str(args.get("model", "")))
    if named:
        claimed.update(embed_dim=WIDTHS[named[1]][0], patch_size=int(named[2]))
        claimed.setdefault("img_size", int(named[3]))
    return claimed


def _heads(path: Path, args: dict, official: int | None, given: int | None) -> int:
    """The Aux-Net's head count: from the checkpoint's args (num_heads, or what its official model runs), else
    --num-heads."""
    from_args = args.get("num_heads") if isinstance(args.get("num_heads"), int) else official
    if from_args is not None and given is not None and given != from_args:
        raise UsageError(
            f"--num-heads {given}, but the checkpoint's Aux-Net ran {from_args} heads ({args.get('model', 'args')}); "
            "the Aux-Net's own count keeps its function: choose the Desc-Net's with `expand --num-heads`"
        )
    heads = from_args or given
    if heads is None:
        raise UsageError(
            f"{path}: the checkpoint does not say its head count (no official model name in args); give --num-heads"
        )
    return heads


def _keys(d: dict) -> str:
    keys = [one_line(str(k)) for k in list(d)[:6]]
    return "keys " + ", ".join(keys) + (", ..." if len(d) > 6 else "") if keys else "no keys"


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return one_line(lines[0][:200]) if lines else type(e).__name__
