"""`lgtool expand --ancestor`: a Desc-Net cut from a larger ViT by weight selection, as a plan and its run.

The route the bench's weight-selection rows start from, offered as a command: the same builder
(`weight_selection.selected_model`), the same ancestor loader, the same choices (head kept when the labels match,
narrowing keeps the head count). `plan_selection` makes every check from the ancestor's architecture alone,
built on the meta device (what it is, that it is a plain ViT at least as wide as the target, the target's size,
memory and output path): no weight read, nothing written. `run_selection` loads the ancestor, cuts, writes the
folder and, with `check`, reloads it with plain timm and compares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lgtool.base.arch import Arch, build_vit, check_memory, one_line, parse_width
from lgtool.base.atomic import scoped
from lgtool.base.errors import InputError, UsageError
from lgtool.base.lazy import lazy, torch
from lgtool.base.normalization import Normalization
from lgtool.base.outputs import check_output
from lgtool.baselines.weight_selection import layer_plan, selected_model
from lgtool.hub import check_channels, selection_lineage, write_descnet
from lgtool.training.descnet import ExpandConfig, check_expand_memory, verifier, would_write

ancestors = lazy("lgtool.training.ancestor")  # torch at first use: `lgtool expand --help` stays torch-free

DEFAULT_LAYERS = "spaced"  # the bench's full fmnist-vit run chose it in 27 of its 30 weight-selection rows


@dataclass(frozen=True)
class SelectionPlan:
    """A weight selection, checked: the ancestor, the Desc-Net cut from it and the folder it goes to."""

    ancestor: str  # as given: a shipped name, a timm name or a folder
    folder: Path | None  # the ancestor's folder; None for a timm name
    source: Arch  # the ancestor's architecture
    target: Arch
    layers: list  # the ancestor block of every layer
    norm: Normalization  # the ancestor's input normalization, which the Desc-Net's config.json states
    output: Path
    cfg: ExpandConfig
    force: bool

    @property
    def policy(self) -> str:
        return self.cfg.layers or DEFAULT_LAYERS

    def describe(self) -> dict:
        """What the run would write, from the plan alone (`lgtool expand --ancestor --dry-run` prints it)."""
        return {
            **would_write(self.output, self.target, "weight-selection"),
            "ancestor": self.ancestor,
            "layer_policy": self.policy,
            "layers": self.layers,
            "head": "kept" if self.target.num_classes == self.source.num_classes else "fresh",
            "from_width": self.source.embed_dim,
            "check": self.cfg.check,
        }


def plan_selection(output=None, cfg: ExpandConfig | None = None, *, force: bool = False) -> SelectionPlan:
    """Every check of a weight selection, from the ancestor's architecture alone (no weight read, nothing
    written); claims the output (default name desc-d<depth>-<width>) for the run's final rename."""
    cfg = cfg or ExpandConfig()
    if cfg.ancestor is None:
        raise UsageError("weight selection needs --ancestor NAME|DIR: the larger ViT to cut the Desc-Net from")
    folder = ancestors.resolve_ancestor(cfg.ancestor)
    source, norm = ancestor_arch(cfg.ancestor, folder)
    target = selection_target(cfg, source)
    policy = cfg.layers or DEFAULT_LAYERS
    layers = layer_plan(source.depth, target.depth, policy)
    check_memory(source, f"--ancestor {cfg.ancestor}", copies=2)  # the ancestor and the state dict it loads
    check_expand_memory(target, cfg.check, sizes="--depth or --width")
    output = Path(output or f"desc-d{target.depth}-{cfg.width or target.embed_dim}")
    check_output(output, inputs=[folder], force=force, is_dir=True)
    return SelectionPlan(cfg.ancestor, folder, source, target, layers, norm, output, cfg, force)


def run_selection(plan: SelectionPlan) -> dict:
    """The plan, done: the ancestor loaded as the bench loads it, the Desc-Net cut by the bench's own builder,
    its folder written and, with `check`, verified before it takes its name."""
    ancestor = ancestors.load_ancestor(plan.ancestor)
    if _vit_arch(ancestor) != plan.source:  # its folder was changed after the plan read it
        raise InputError(f"--ancestor {plan.ancestor} changed while this command ran; run it again")
    model, done = selected_model(ancestor.state_dict(), plan.target, plan.policy)
    del ancestor  # its memory back before the folder is written
    state = model.state_dict()
    info = selection_lineage(plan.ancestor, weights_digest(plan), plan.source, plan.target, done)
    checked = {}
    verify = verifier(state, plan.target, plan.cfg.tol, checked) if plan.cfg.check else None
    write_descnet(state, plan.target, plan.output, plan.norm, info, force=plan.force, verify=verify)
    t = plan.target
    result = {"output": str(plan.output), "route": info["route"], "ancestor": plan.ancestor}
    result.update(depth=t.depth, width=t.embed_dim, num_heads=t.num_heads, num_classes=t.num_classes)
    result.update(params=t.num_params(), **{k: info[k] for k in ("layers", "layer_policy", "width_source", "head")})
    result["ancestor_sha256"] = info["ancestor_sha256"]
    if plan.cfg.check:
        result["check"] = checked
    return result


@scoped
def select_folder(output=None, cfg: ExpandConfig | None = None, *, force: bool = False) -> dict:
    """`lgtool expand --ancestor`: ancestor -> Desc-Net folder by weight selection, as a plan and its run. The
    output's claim guards this call's own write only."""
    return run_selection(plan_selection(output, cfg, force=force))


def ancestor_arch(name: str, folder: Path | None) -> tuple[Arch, Normalization]:
    """The ancestor's architecture and input normalization, from its skeleton (no weight read); one InputError
    naming the route that does take it if weight selection cannot cut from it."""
    model = ancestors.ancestor_skeleton(name, folder)
    if not ancestors.is_vit(model):
        raise InputError(
            f"--ancestor {name} is not a ViT: weight selection cuts a ViT's tensors from a ViT's; learn a learngene "
            f"from it instead (lgtool learn --ancestor {name} ...)"
        )
    arch = _vit_arch(model)
    differs = "its blocks are not timm's plain ones" if arch is None else _difference(model, build_vit(arch, "meta"))
    if differs:
        raise InputError(
            f"--ancestor {name} is a ViT of a kind lgtool's Desc-Nets do not describe ({differs}): weight "
            "selection cuts plain timm VisionTransformers; learn a learngene from it instead "
            f"(lgtool learn --ancestor {name} ...)"
        )
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in (model.pretrained_cfg or {}).items()}
    check_channels({"pretrained_cfg": cfg}, arch.in_chans, name)
    return arch, Normalization.from_pretrained_cfg(cfg, where=f"--ancestor {name}")


def selection_target(cfg: ExpandConfig, source: Arch) -> Arch:
    """The Desc-Net's architecture: the ancestor's, at the asked depth, width and labels; narrowing keeps the
    ancestor's head count (every head narrowed, none merged), as the bench does, unless --num-heads says."""
    width = source.embed_dim if cfg.width is None else parse_width(cfg.width, 1)[0]  # its spelling; heads below
    if width > source.embed_dim:
        raise InputError(
            f"--width {width} is wider than --ancestor {cfg.ancestor} ({source.embed_dim}): weight selection only "
            f"narrows; learn a learngene of that width from it instead (lgtool learn --ancestor {cfg.ancestor} "
            f"--width {width} ...)"
        )
    heads = cfg.num_heads or source.num_heads
    if width % heads:
        given = "--num-heads" if cfg.num_heads is not None else "the ancestor's head count"
        raise UsageError(
            f"width {width} is not divisible by {heads} heads ({given}); choose --num-heads among the divisors "
            f"of {width}"
        )
    classes = source.num_classes if cfg.num_classes is None else cfg.num_classes
    depth = source.depth if cfg.depth is None else cfg.depth
    return Arch.checked(source, depth=depth, embed_dim=width, num_heads=heads, num_classes=classes)


def weights_digest(plan: SelectionPlan) -> tuple[str | None, str | None]:
    """The sha256 of the ancestor's weights file, or None and why there is none to hash."""
    folder = plan.folder
    path = ancestors.weights_file(folder) if folder is not None else ancestors.cached_weights(plan.ancestor)
    if path is None:
        return None, f"timm's pretrained weights of {plan.ancestor} are in no Hugging Face hub cache file"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest(), None


def _vit_arch(model) -> Arch | None:
    """The Arch of a timm VisionTransformer, read from its modules; None if they do not say one."""
    try:
        block, width = model.blocks[0], model.embed_dim
        return Arch(
            img_size=model.patch_embed.img_size[0],
            patch_size=model.patch_embed.patch_size[0],
            in_chans=model.patch_embed.proj.in_channels,
            embed_dim=width,
            depth=len(model.blocks),
            num_heads=block.attn.num_heads,
            mlp_ratio=block.mlp.fc1.out_features / width,
            qkv_bias=block.attn.qkv.bias is not None,
            class_token=model.cls_token is not None,
            global_pool=model.global_pool,
            fc_norm=not isinstance(model.fc_norm, torch.nn.Identity),
            num_classes=model.num_classes,
        )
    except (AttributeError, IndexError, TypeError, InputError):
        return None


def _difference(model, plain) -> str | None:
    """The first tensor in which `model` differs from the plain ViT `plain` (name or shape), or None."""
    own, ref = model.state_dict(), plain.state_dict()
    for key in [*own, *ref]:
        if key not in ref or key not in own:
            return f"{'it has' if key in own else 'it lacks'} {one_line(key)}"
        if own[key].shape != ref[key].shape:
            return f"{one_line(key)} is {list(own[key].shape)}, a plain ViT's {list(ref[key].shape)}"
    return None
