"""Resolve `--ancestor`: a timm name or alias (pretrained weights via timm), a name plus a weights file,
a hub-layout folder (`model.safetensors` + `config.json`, e.g. a Desc-Net lgtool wrote), or the short
name of an ancestor shipped with lgtool (`fmnist-vit`)."""

from __future__ import annotations

from pathlib import Path

import torch

from lgtool._compat import import_timm, offline
from lgtool.arch import ANCESTOR_ALIASES, SHIPPED_ANCESTORS
from lgtool.errors import InputError


def load_ancestor(name: str, weights: str | None = None, num_classes: int | None = None) -> torch.nn.Module:
    """The ancestor in eval mode. `num_classes` is the data's class count, which the ancestor must match."""
    timm = import_timm()
    path = shipped_ancestor(name) or Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"--ancestor {name}: a folder, but without config.json (timm's hub layout)")
        model = _create(timm, f"local-dir:{path.resolve()}", pretrained=weights is None)
    else:
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
        model = _create(timm, arch, pretrained=weights is None, num_classes=num_classes if weights else None)
    if weights is not None:
        _load_weights(model, Path(weights))
    classes = getattr(model, "num_classes", None)
    if num_classes is not None and classes != num_classes:
        raise InputError(
            f"--ancestor {name} predicts {classes} classes but the data has {num_classes}; distillation needs the "
            "same label space: fine-tune the ancestor on this data first (lgtool finetune ... --num-classes "
            f"{num_classes})"
        )
    return model.eval()


def shipped_ancestor(name: str) -> Path | None:
    """The folder of an ancestor shipped inside the package, for its short name; None for any other name."""
    if name not in SHIPPED_ANCESTORS or Path(name).exists():  # a local folder of that name wins
        return None
    return Path(__file__).parent / "ancestors" / SHIPPED_ANCESTORS[name]


def _create(timm, name: str, pretrained: bool, **kwargs):
    if pretrained and offline() and not name.startswith("local-dir:") and not _cached(timm, name):
        raise InputError(
            f"--ancestor {name}: no cached pretrained weights and offline (HF_HUB_OFFLINE=1); "
            "pass a local file with --ancestor-weights FILE, or a model folder as --ancestor"
        )
    try:
        return timm.create_model(name, pretrained=pretrained, **{k: v for k, v in kwargs.items() if v is not None})
    except Exception as e:  # noqa: BLE001 - hub/network failures come in many types
        if not pretrained or isinstance(e, InputError):
            raise
        why = "offline (HF_HUB_OFFLINE=1)" if offline() else f"{type(e).__name__}"
        raise InputError(
            f"--ancestor {name}: cannot get pretrained weights ({why}); pass a local file with "
            f"--ancestor-weights FILE, or a model folder as --ancestor"
        ) from None


def _cached(timm, name: str) -> bool:
    """Whether timm's hub weights for `name` are in the local cache (checked before building the model)."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    files = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    return bool(hub_id) and any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in files)


def read_state_dict(path: Path) -> dict:
    """A state dict from .safetensors, or from a torch checkpoint loaded with weights_only=True."""
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: unreadable weights file ({type(e).__name__}: {str(e)[:120]})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
            if unexpected
            else f"{wrong[0]} is {list(state[wrong[0]].shape)}, model has {list(own[wrong[0]].shape)}"
        )
        raise InputError(f"{path}: weights of another architecture ({what})")
    model.load_state_dict(state)
