"""`lgtool convert`: an Aux-Net checkpoint of the papers' official code -> a learngene/1 file, as a plan (every
check, nothing written) and a run. What the checkpoint holds is read by `official`.

What lgtool cannot represent is recorded, not hidden: the official Aux-Nets' LayerNorm eps is 1e-5, timm's
1e-6 (the converted Aux-Net and its Desc-Nets run with 1e-6; the logit difference is measured and stored).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lgtool.base import __version__
from lgtool.base.arch import HEAD_DIM, Arch, first_error
from lgtool.base.errors import InputError
from lgtool.base.lazy import lazy, torch
from lgtool.base.normalization import Normalization
from lgtool.base.outputs import check_output
from lgtool.convert.official import (
    HEAD,
    NONBLOCK,
    aux_arch,
    detect,
    load_checkpoint,
    state_dict,
    training_args,
)
from lgtool.convert.settings import ConvertConfig
from lgtool.learngene import GeneMeta, Learngene, first_nonfinite, tensor_specs
from lgtool.rules import RULES

expansion = lazy("lgtool.materialize")  # torch: only when a conversion runs

OFFICIAL_EPS = 1e-5  # every LayerNorm of the official Aux-Nets (nn.LayerNorm's default)
# args a learngene's provenance keeps (plain values only): the recipe the Aux-Net was trained with.
KEPT_ARGS = (
    "model", "input_size", "nb_classes", "data_set", "epochs", "batch_size", "lr", "seed", "drop_path",
    "teacher_model", "distillation_type", "distillation_alpha", "distillation_tau",
)  # fmt: skip


def convert(ckpt, output, **options) -> dict:
    """Read an official Aux-Net checkpoint (or a plain state dict in its key layout, .pth or .safetensors) and
    write it as a learngene: `plan_convert(ckpt, output, **options)`, every check, then `run_convert`."""
    return run_convert(plan_convert(ckpt, output, **options))


@dataclass
class ConvertPlan:
    """A checked conversion: the learngene to write (all but its provenance) and what it came from."""

    ckpt: Path
    output: Path
    gene: Learngene
    source: dict  # what the checkpoint says of the weights: which they are, their epoch, its training args

    def describe(self) -> dict:
        """The learngene the run would write, in plain values (`lgtool convert --dry-run` prints them)."""
        gene, arch = self.gene, self.gene.arch
        return {
            "output": str(self.output),
            "method": gene.method,
            "repository": RULES[gene.method].OFFICIAL,
            "weights": self.source["weights"],
            "epoch": self.source.get("epoch"),
            "width": arch.embed_dim,
            "num_heads": arch.num_heads,
            "aux_depth": arch.depth,
            "num_classes": arch.num_classes,
            "rule": gene.meta.rule.model_dump(),
            "params": gene.num_params(),
        }


def plan_convert(
    ckpt,
    output,
    *,
    method: str | None = None,
    stages: list[int] | None = None,
    aux_depth: int | None = None,
    num_heads: int | None = None,
    ema: bool = False,
    force: bool = False,
) -> ConvertPlan:
    """Every check of a conversion, before anything is written: the options, the output, then the checkpoint
    (loaded safely, see `load_checkpoint`): its layout, architecture and tensors."""
    ckpt, output = Path(ckpt), Path(output)
    cfg = ConvertConfig(method=method, stages=stages, aux_depth=aux_depth, num_heads=num_heads)  # the ranges
    if not ckpt.is_file():
        raise InputError(f"{ckpt}: no such file")
    check_output(output, inputs=[ckpt], force=force)
    state, container = state_dict(ckpt, load_checkpoint(ckpt), ema)
    args = training_args(container)
    model = args.get("model") if isinstance(args.get("model"), str) else None
    method, found = detect(ckpt, state, model, {"stages": cfg.stages, "aux_depth": cfg.aux_depth}, cfg.method)
    arch = aux_arch(ckpt, state, found["names"], found, args, cfg.num_heads)
    gene = _gene(ckpt, state, method, arch, found)
    epoch = container.get("epoch") if container else None
    source = {
        "weights": ("model_ema" if ema else "model") if container is not None else "state dict",
        **({"epoch": epoch} if isinstance(epoch, int) else {}),
        **({"args": {k: args[k] for k in KEPT_ARGS if _plain(args.get(k))}} if args else {}),
    }
    return ConvertPlan(ckpt, output, gene, source)


def _gene(ckpt: Path, state: dict, method: str, arch: Arch, found: dict) -> Learngene:
    """The learngene of these official tensors, each checked: every one the rule needs, of its shape,
    floating point and finite, and none it does not know."""
    names = found["names"]  # template name -> official key
    tensors = {name: state[key] for name, key in names.items()}
    tensors.update({k: state[k] for k in (*NONBLOCK, *HEAD) if k in state})
    norm = Normalization() if arch.in_chans == 3 else Normalization.plain(arch.in_chans)
    try:
        meta = GeneMeta(method=method, arch=arch, rule=found["rule"], tensors={}, input=norm)
    except ValidationError as e:
        raise InputError(f"{ckpt}: cannot describe this Aux-Net as a learngene: {first_error(e)}") from None
    specs = tensor_specs(meta)
    official = {**names, **{k: k for k in (*NONBLOCK, *HEAD)}}
    extra = sorted(set(tensors) - set(specs))
    if extra:
        raise InputError(f"{ckpt}: {official[extra[0]]} does not fit an Aux-Net with {arch.num_classes} classes")
    for name, (shape, _) in specs.items():
        if name not in tensors:
            raise InputError(f"{ckpt}: not a complete {method.upper()} Aux-Net: {official.get(name, name)} is missing")
        if tuple(tensors[name].shape) != tuple(shape):
            raise InputError(
                f"{ckpt}: {official[name]} has shape {list(tensors[name].shape)}; an Aux-Net of width "
                f"{arch.embed_dim} needs {list(shape)}"
            )
    bad = next((n for n, t in tensors.items() if not t.is_floating_point()), None)
    if bad is not None:
        raise InputError(f"{ckpt}: {official[bad]} is {tensors[bad].dtype}; an Aux-Net's weights are floating point")
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise InputError(f"{ckpt}: {official[bad]} holds NaN or Inf values")
    meta.tensors = {name: role for name, (_, role) in specs.items()}
    return Learngene(meta, {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})


def run_convert(plan: ConvertPlan) -> dict:
    """Measure what the conversion changes (LayerNorm eps), record where the learngene came from, write it."""
    gene, meta, arch = plan.gene, plan.gene.meta, plan.gene.arch
    eps_diff = eps_effect(gene)
    differences = _differences(arch, eps_diff)
    meta.provenance = {
        "converted_from": plan.ckpt.name,
        "sha256": _sha256(plan.ckpt),
        "repository": RULES[gene.method].OFFICIAL,
        "method": gene.method,
        **plan.source,
        "norm_eps": {"source": OFFICIAL_EPS, "lgtool": 1e-6, "max_abs_logit_diff": eps_diff},
        "differences": differences,
        "lgtool_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    gene.save(plan.output)
    return {**plan.describe(), "sha256": meta.provenance["sha256"], "differences": differences}


def _differences(arch: Arch, eps_diff: float) -> list[str]:
    """What the converted learngene does not reproduce of its source, in words."""
    differences = [
        "LayerNorm eps 1e-5 in the official Aux-Net, 1e-6 in timm's ViT (lgtool's): max abs logit "
        f"difference {eps_diff:.2e} on random inputs"
    ]
    if arch.head_dim != HEAD_DIM and arch.embed_dim % HEAD_DIM == 0:
        usual = arch.embed_dim // HEAD_DIM
        differences.append(
            f"{arch.num_heads} heads of {arch.head_dim} as the Aux-Net ran; the official Des-Nets of width "
            f"{arch.embed_dim} run {usual} (expand --num-heads {usual}: same weights, another function)"
        )
    differences.append(
        "final norm before pooling as in the Aux-Net (the official Des-Nets move it after pooling, fc_norm, so "
        "they do not reproduce their Aux-Net; lgtool's do)"
    )
    return differences


def eps_effect(gene: Learngene, batch: int = 2, seed: int = 0) -> float:
    """Max abs logit difference between the Aux-Net with the official LayerNorm eps and with timm's."""
    with torch.no_grad():
        aux = expansion.build_aux(gene).eval()
        arch = gene.arch
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size, generator=generator)
        ours = aux(x)
        for m in aux.vit.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.eps = OFFICIAL_EPS
        return (aux(x) - ours).abs().max().item()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(v) -> bool:
    return isinstance(v, (str, int, float, bool)) and not (isinstance(v, float) and not math.isfinite(v))
