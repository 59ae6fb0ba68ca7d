"""Resolve `--ancestor`: a timm name or alias (pretrained weights via timm), a name plus a weights file,
a hub-layout folder (`model.safetensors` + `config.json`, e.g. a Desc-Net lgtool wrote), or the short
name of an ancestor shipped with lgtool (`fmnist-vit`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import torch
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.utils import HfHubHTTPError
from safetensors.torch import load_file

from lgtool.base.arch import ANCESTOR_ALIASES, SHIPPED_ANCESTORS, one_line
from lgtool.base.compat import offline, utf8_path
from lgtool.base.errors import InputError
from lgtool.base.header import safetensors_header
from lgtool.base.lazy import timm
from lgtool.base.normalization import Normalization
from lgtool.learngene import first_nonfinite
from lgtool.training.data import View


def load_ancestor(
    name: str, weights: str | None = None, num_classes: int | None = None, *, weights_flag: bool = False
) -> torch.nn.Module:
    """The ancestor in eval mode. `num_classes` is the data's class count, which the ancestor must match.
    `weights_flag`: the command takes --ancestor-weights, so an error may suggest it (`resolve_ancestor`)."""
    folder = resolve_ancestor(name, weights, weights_flag=weights_flag)
    if folder is not None and weights is None:
        model = load_folder(folder, f"--ancestor {name}")
    elif folder is not None:
        model = _create(timm, f"local-dir:{folder.resolve()}", pretrained=False)
    else:
        arch = ANCESTOR_ALIASES.get(name, name)
        classes = num_classes if weights else None
        model = _create(
            timm, arch, pretrained=weights is None, ancestor=name, weights_flag=weights_flag, num_classes=classes
        )
    if weights is not None:
        _load_weights(model, Path(weights))
    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        source = weights or (weights_file(folder) if folder is not None else f"{name}'s pretrained weights")
        raise InputError(f"--ancestor {name}: {source} holds non-finite weights (NaN or Inf in {bad})")
    classes = getattr(model, "num_classes", None)
    if num_classes is not None and classes != num_classes:
        raise InputError(
            f"--ancestor {name} predicts {classes} classes but the data has {num_classes}; distillation needs the "
            "same label space: fine-tune the ancestor on this data first (lgtool finetune ... --num-classes "
            f"{num_classes})"
        )
    return model.eval()


def resolve_ancestor(name: str, weights: str | None = None, *, weights_flag: bool = False) -> Path | None:
    """The cheap half of `load_ancestor`: what `name` is, checked without building a model or reading weights.

    Returns the folder of a folder ancestor (shipped or local), None for a timm name; one-line InputError for a
    name that is none of them, a weights file given as the name, or pretrained weights that cannot be had: not
    cached and offline, or a hub that one request without retries cannot reach (`check_reachable`). The error
    says how to pass a local copy instead: a model folder, and --ancestor-weights where `weights_flag` says the
    command takes it."""
    path = shipped_ancestor(name) or Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"--ancestor {name}: a folder, but without config.json (timm's hub layout)")
        return path
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin") and weights is None:
        raise InputError(
            f"--ancestor {name}: a weights file needs its architecture: "
            f"--ancestor <timm name> --ancestor-weights {name}"
        )
    arch = ANCESTOR_ALIASES.get(name, name)
    if not timm.is_model(arch):
        raise InputError(
            f"--ancestor {name}: not a timm model name, alias ({', '.join(ANCESTOR_ALIASES)}), shipped "
            f"ancestor ({', '.join(SHIPPED_ANCESTORS)}), or model folder"
        )
    if weights is None and not _cached(timm, arch):
        if offline():
            raise _offline_error(name, weights_flag)
        check_reachable(name, weights_flag)
    return None


def _offline_error(name: str, weights_flag: bool) -> InputError:
    return InputError(
        f"--ancestor {name}: no cached pretrained weights and offline (HF_HUB_OFFLINE=1); "
        + local_copy_hint(name, weights_flag)
    )


def local_copy_hint(name: str, weights_flag: bool) -> str:
    """How to pass a timm name's weights without the hub, as the command at hand takes them."""
    folder = "a model folder (timm's hub layout: config.json + model.safetensors) as --ancestor"
    if weights_flag:
        return f"pass a local file with --ancestor {name} --ancestor-weights FILE, or {folder}"
    return f"pass {folder}"


# The hub's client retries a failed download 5 times with backoff (about 23 s a file, and timm asks for two):
# one request without retries says first whether there is a hub to ask. HF_HUB_ETAG_TIMEOUT, where set,
# gives it longer than this.
_PROBE_TIMEOUT_S = 5.0


def check_reachable(name: str, weights_flag: bool = False) -> None:
    """One HEAD request for the pretrained weights of the timm name (or alias) `name`, with no retries: a
    one-line InputError if the hub does not answer (no network, refused, timed out). Any answer, even a missing
    file, lets timm's own loader take it from there; a model timm fetches by URL, not from the hub, is not
    checked (that download fails at once, without retries)."""
    arch = ANCESTOR_ALIASES.get(name, name)
    hub_id = getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None)
    if not hub_id:
        return
    repo, _, revision = hub_id.partition("@")  # timm's "repo@revision" spelling
    url = hf_hub_url(repo, "model.safetensors", revision=revision or None)
    try:
        timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or _PROBE_TIMEOUT_S)
    except ValueError:
        timeout = _PROBE_TIMEOUT_S
    try:
        get_hf_file_metadata(url, timeout=timeout)
    except HfHubHTTPError:
        return  # the hub answered (a file it lacks, a gated repo): timm's loader handles those
    except Exception as e:  # noqa: BLE001 - the transport's many types of "no answer"
        where = urlsplit(url)
        slow = "; HF_HUB_ETAG_TIMEOUT=SECONDS waits longer" if "Timeout" in type(e).__name__ else ""
        raise InputError(
            f"--ancestor {name}: cannot fetch its pretrained weights from {where.scheme}://{where.netloc} "
            f"({_brief(e)}{slow}); " + local_copy_hint(name, weights_flag)
        ) from None


def ancestor_heads(name: str) -> int | None:
    """The head count a folder ancestor's config.json declares, read without building the model (None if it
    declares none, or `name` is a timm name)."""

    path = shipped_ancestor(name) or Path(name)
    try:
        heads = json.loads((path / "config.json").read_text())["model_args"]["num_heads"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return heads if type(heads) is int and heads > 0 else None


def ancestor_skeleton(name: str, folder: Path | None) -> torch.nn.Module:
    """The ancestor `resolve_ancestor` found (`folder`, or a timm name), built on the meta device: its
    architecture, with no weights read or memory spent (what a plan checks an ancestor by)."""
    with torch.device("meta"):
        if folder is not None:
            return _create(timm, f"local-dir:{Path(folder).resolve()}", pretrained=False)
        return _create(timm, ANCESTOR_ALIASES.get(name, name), pretrained=False)


def is_vit(model: torch.nn.Module) -> bool:
    """Whether `model` has a ViT's patch embedding and blocks: what seeding and weight selection cut from."""
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def ancestor_view(ancestor: torch.nn.Module, data_view: View) -> View:
    """Images as the ancestor was trained to see them: its input size, channels and normalization
    (the data's own where its pretrained_cfg says nothing)."""
    cfg = getattr(ancestor, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (data_view.in_chans, data_view.img_size, data_view.img_size))
    in_chans = ancestor.patch_embed.proj.in_channels if hasattr(ancestor, "patch_embed") else size[0]
    return View(size[-1], in_chans, Normalization.from_pretrained_cfg(cfg, data_view.norm, where="--ancestor"))


def shipped_ancestor(name: str) -> Path | None:
    """The folder of an ancestor shipped inside the package, for its short name; None for any other name."""
    if name not in SHIPPED_ANCESTORS or Path(name).exists():  # a local folder of that name wins
        return None
    return Path(__file__).parent.parent / "ancestors" / SHIPPED_ANCESTORS[name]  # lgtool/ancestors/


def _create(timm, name: str, pretrained: bool, *, ancestor: str | None = None, weights_flag: bool = False, **kwargs):
    """timm.create_model, its failures one line; `ancestor` is the name the user gave for the timm name `name`."""
    ancestor = ancestor or name
    if pretrained and offline() and not name.startswith("local-dir:") and not _cached(timm, name):
        raise _offline_error(ancestor, weights_flag)
    try:
        return timm.create_model(name, pretrained=pretrained, **{k: v for k, v in kwargs.items() if v is not None})
    except Exception as e:  # noqa: BLE001 - hub/network failures come in many types
        if isinstance(e, InputError):
            raise
        if not pretrained:  # a folder's config.json (or the arguments) describe no model timm can build
            raise InputError(
                f"--ancestor {name.removeprefix('local-dir:')}: timm cannot build it ({_brief(e)})"
            ) from None
        why = "offline (HF_HUB_OFFLINE=1)" if offline() else f"{type(e).__name__}"
        raise InputError(
            f"--ancestor {ancestor}: cannot get pretrained weights ({why}); " + local_copy_hint(ancestor, weights_flag)
        ) from None


# The weights file timm's local-dir loader takes from a folder: the first of these, else the first file of
# the first of these extensions (timm.models._hub.load_state_dict_from_path).
_FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
_FOLDER_EXTENSIONS = (".safetensors", ".pth", ".pth.tar", ".bin")


def weights_file(folder: Path) -> Path | None:
    """The weights file timm loads from a hub-layout folder, or None if it holds none."""
    folder = Path(folder)
    for name in _FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    for ext in _FOLDER_EXTENSIONS:
        files = sorted(p for p in folder.glob(f"*{ext}") if p.is_file())
        if files:
            return files[0]
    return None


def load_folder(folder: Path, label: str | None = None, **kwargs) -> torch.nn.Module:
    """`timm.create_model("local-dir:FOLDER", pretrained=True, **kwargs)`, or one InputError line that names
    the folder's weights file and what is wrong with it: missing, unreadable, or not the model its config.json
    describes (`label`, e.g. "--ancestor NAME", leads the line)."""
    folder = Path(folder)
    try:
        with utf8_path(folder.resolve()) as named:  # safetensors takes UTF-8 names only
            return timm.create_model(f"local-dir:{named}", pretrained=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - timm reports a bad folder in many types; say which fault it is
        what = _folder_fault(timm, folder, e)
        raise InputError(f"{label}: {what}" if label else what) from None


def _folder_fault(timm, folder: Path, error: Exception) -> str:
    """Why timm could not load a folder, found by reading it the way timm does, one step at a time."""

    weights = weights_file(folder)
    if weights is None:
        return f"{folder}: no weights file ({_FOLDER_WEIGHTS[0]} is missing)"
    try:
        if weights.suffix == ".safetensors":
            safetensors_header(weights)  # truncated or corrupt: said precisely, torch-free
        state = read_state_dict(weights)
    except InputError as e:
        return str(e)
    try:
        own = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=False).state_dict()
    except Exception as e:  # noqa: BLE001
        return f"{folder / 'config.json'}: timm cannot build the model it describes ({_brief(e)})"
    what = _mismatch(state, own)
    if what:
        return f"{weights}: weights do not match the model {folder / 'config.json'} describes ({what})"
    return f"{folder}: timm cannot load this model ({_brief(error)})"


def _brief(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _cached(timm, name: str) -> bool:
    """Whether timm's hub weights for `name` are in the local cache (checked before building the model)."""
    return cached_weights(name) is not None


def cached_weights(name: str) -> Path | None:
    """The file of timm's pretrained weights for the timm name (or alias) `name` in the Hugging Face hub cache, in
    the order timm's hub loader tries them (safetensors first); None if none is cached."""
    cfg = timm.models.get_pretrained_cfg(ANCESTOR_ALIASES.get(name, name))
    hub_id = getattr(cfg, "hf_hub_id", None)
    for file in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin") if hub_id else ():
        found = try_to_load_from_cache(hub_id, file)
        if isinstance(found, str):
            return Path(found)
    return None


def read_state_dict(path: Path) -> dict:
    """A state dict from .safetensors, or from a torch checkpoint loaded with weights_only=True."""
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            with utf8_path(path) as named:  # safetensors takes UTF-8 names only
                state = load_file(str(named))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: unreadable weights file ({_brief(e)[:160]})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict (it holds a {type(state).__name__})")
    return {str(k).removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _mismatch(state: dict, own: dict) -> str | None:
    """The first way `state` is not a state dict of the model whose own is `own`, or None."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        return f"missing {one_line(missing[0])}"
    if unexpected:
        return f"unexpected {one_line(unexpected[0])}"
    shape = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    wrong = [k for k in own if not isinstance(state[k], torch.Tensor) or shape[k] != tuple(own[k].shape)]
    if wrong:
        return f"{one_line(wrong[0])} is {list(shape[wrong[0]])}, model has {list(own[wrong[0]].shape)}"
    return None


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    state = read_state_dict(path)
    what = _mismatch(state, model.state_dict())
    if what:
        raise InputError(f"{path}: weights of another architecture ({what})")
    model.load_state_dict(state)
