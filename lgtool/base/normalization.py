"""How a model wants its pixels: mean, std, resize interpolation and crop, validated here once.

One model, stored in two places under the same keys: a learngene's `input` and a Desc-Net's timm
`pretrained_cfg` in config.json (where timm reads them). Training pairs it with a size and channel count
(`training.view.View`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lgtool.base.arch import MAX_IN_CHANS
from lgtool.base.errors import InputError

# strict: a bool or a string of digits is a bad file, not a number
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
# The interpolations timm's transforms know (timm.data.transforms.str_to_interp_mode).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")

# What each field must be, as the one-line error for a pretrained_cfg says it.
_MUST = {
    "mean": "a list of finite numbers",
    "std": "a list of finite numbers",
    "crop_pct": "a number in (0, 1]",
    "interpolation": f"one of {', '.join(INTERPOLATIONS)}",
}


class Normalization(BaseModel):
    """How images are normalized and resized for a model (timm's pretrained_cfg fields of that name).

    mean and std hold one value per input channel, or one for all; how many a model needs is checked
    where the model is known (a learngene's arch, a config's model_args)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: Annotated[list[Number], Field(min_length=1, max_length=MAX_IN_CHANS)] = [0.485, 0.456, 0.406]
    std: Annotated[list[Positive], Field(min_length=1, max_length=MAX_IN_CHANS)] = [0.229, 0.224, 0.225]
    interpolation: Literal[INTERPOLATIONS] = "bicubic"
    crop_pct: Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)] = 0.875

    @classmethod
    def plain(cls, in_chans: int) -> Normalization:
        """timm's ViT default, 0.5 and 0.5 for every channel: for images with no statistics of their own."""
        return cls(mean=[0.5] * in_chans, std=[0.5] * in_chans)

    @classmethod
    def from_pretrained_cfg(
        cls, cfg: Mapping, defaults: Normalization | None = None, where: str = "input"
    ) -> Normalization:
        """The normalization a timm pretrained_cfg (or a learngene's `input`) states; its other keys are
        ignored, and a field it does not state is taken from `defaults` (default: this model's defaults).
        A bad value is one InputError line naming `where` and the field."""
        stated = {key: cfg[key] for key in _MUST if key in cfg}
        try:
            return cls.model_validate({**(defaults or cls()).model_dump(), **stated})
        except ValidationError as e:
            error = e.errors()[0]
            key = error["loc"][0]
            if error["type"] == "greater_than" and key == "std":
                must = "positive (images are divided by it)"
            else:
                must = f"{_MUST[key]}, got {stated.get(key)!r:.80}"
            raise InputError(f"{where}: pretrained_cfg.{key} must be {must}") from None

    def pretrained_cfg(self) -> dict:
        """These fields as timm's pretrained_cfg holds them, in its order."""
        return {
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
        }
