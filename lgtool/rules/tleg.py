"""TLEG (Xia et al., AAAI 2024): every block tensor is a linear function of the layer's depth.

    W(l) = intercept + ((l - 1) / L) * slope        l = 1..L, L = depth of the net being built

The paper calls the slope theta_A and the intercept theta_B. The Aux-Net (L = aux depth, 12 by default)
and every Desc-Net sample the same segment [0, 1) of the line with step 1/L: a shallower net skips
points, a deeper one interpolates. All 12 slots follow the rule, LayerNorms and biases included.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict

TEMPLATES = ("intercept", "slope")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["tleg"] = "tleg"
    coefficient: Literal["(l-1)/L"] = "(l-1)/L"
    # The tensor names, as template_specs makes them.
    intercept: Literal["intercept.{slot}"] = "intercept.{slot}"
    slope: Literal["slope.{slot}"] = "slope.{slot}"


def coefficient(layer: int, depth: int) -> float:
    """Weight of the slope in layer `layer` (1-based) of a `depth`-layer net."""
    return (layer - 1) / depth


def template_specs(rule: Rule, arch) -> dict:
    return {
        f"{t}.{slot}": (shape, {"template": t, "slot": slot})
        for t in TEMPLATES
        for slot, shape in arch.slot_shapes().items()
    }


def init_templates(rule: Rule, arch, generator=None) -> dict:
    """Official init: intercept and slope of every weight trunc-normal(0.02) independently, biases 0;
    LayerNorm intercept (1, 0) and slope (0, 0), so every layer starts as a plain LayerNorm."""
    from lgtool.rules import fresh_slot

    out = {}
    for slot, shape in arch.slot_shapes().items():
        out[f"intercept.{slot}"] = fresh_slot(slot, shape, generator)
        slope = fresh_slot(slot, shape, generator)
        out[f"slope.{slot}"] = slope * 0 if slot.startswith("norm") else slope
    return out


def seed_templates(rule: Rule, arch, layers: list[dict]) -> dict:
    """Templates from an ancestor's L layers: per slot and element, the least-squares line through
    W(l) at c_l = coefficient(l, L), so expanding to depth L samples the line where the ancestor's layers sit."""
    import torch

    c = torch.tensor([coefficient(layer, len(layers)) for layer in range(1, len(layers) + 1)])
    dc = c - c.mean()
    out = {}
    for slot in arch.slot_shapes():
        stack = torch.stack([layer[slot] for layer in layers])  # (L, *shape)
        mean = stack.mean(0)
        # One ancestor layer fixes no slope: take it flat (the sum of squares is 0 only then).
        slope = torch.tensordot(dc, stack - mean, dims=1) / dc.square().sum().clamp_min(1e-12)
        out[f"intercept.{slot}"] = mean - c.mean() * slope
        out[f"slope.{slot}"] = slope
    return out


def depths(rule: Rule, arch) -> tuple[int, int | None]:
    return 1, None


def widths(rule: Rule, arch) -> list[int]:
    return [arch.embed_dim]


def describe_layers(rule: Rule, depth: int) -> list[float]:
    return [coefficient(layer, depth) for layer in range(1, depth + 1)]


def blocks(rule: Rule, tensors: dict, arch, depth: int) -> list[dict]:
    return [
        {
            slot: tensors[f"intercept.{slot}"] + coefficient(layer, depth) * tensors[f"slope.{slot}"]
            for slot in arch.slot_shapes()
        }
        for layer in range(1, depth + 1)
    ]
