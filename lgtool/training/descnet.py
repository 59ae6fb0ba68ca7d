"""`lgtool expand` as a library call (`expand_folder`): a learngene file to a Desc-Net folder, its size-specific
tensors calibrated on data first when asked, and checked against plain timm with `--check`."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from lgtool.family import target_arch
from lgtool.format.arch import Arch, build_vit, check_memory
from lgtool.format.atomic import scoped
from lgtool.format.errors import CheckError
from lgtool.format.lazy import timm
from lgtool.format.outputs import check_output
from lgtool.hub import lineage, write_descnet
from lgtool.learngene import Learngene, load_learngene, read_header
from lgtool.materialize import build_aux, desc_state_dict
from lgtool.training.calibrate import calibrate as calibrate_scalers
from lgtool.training.data import data_paths


def check_descnet(out_dir, state: dict, arch: Arch, gene=None, batch: int = 4, seed: int = 0) -> dict:
    """Reload `out_dir` with plain timm and compare its logits with a model holding `state` in memory (and
    with the learngene's Aux-Net, if given)."""
    reloaded = timm.create_model(f"local-dir:{Path(out_dir).resolve()}", pretrained=True).eval()
    model = build_vit(arch)
    model.load_state_dict(state)
    x = torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x)
        result = {"max_abs_diff_timm": (reloaded(x) - ref).abs().max().item()}
        if gene is not None:
            result["max_abs_diff_aux"] = (build_aux(gene).eval()(x) - ref).abs().max().item()
    return result


@scoped
def expand_folder(
    gene_path,
    output=None,
    *,
    depth=None,
    width=None,
    num_classes=None,
    layer_map=None,
    img_size=None,
    num_heads=None,
    check: bool = False,
    tol: float = 1e-5,
    force: bool = False,
    calibrate: str | None = None,
    calibrate_steps: int = 200,
    calibrate_samples: int = 2000,
    data_dir=None,
    log=None,
) -> dict:
    """`lgtool expand`: learngene file -> Desc-Net folder (default name desc-d<depth>-<width>), optionally
    WAVE-calibrated on data first and checked against plain timm (and the Aux-Net at the Aux size)."""
    _, meta = read_header(gene_path)  # every size and usage check from the header, before a tensor is read
    target = target_arch(Learngene(meta, {}), depth, width, num_classes, layer_map, img_size, num_heads)
    check_memory(target, "expand")
    output = Path(output or f"desc-d{target.depth}-{width or target.embed_dim}")
    reads = [gene_path, data_dir]
    if calibrate is not None:
        reads += data_paths(calibrate, data_dir)
    check_output(output, inputs=reads, force=force, is_dir=True)
    gene = load_learngene(gene_path)
    info = lineage(gene, gene_path, target, layer_map)
    if calibrate is not None:
        with log() if log else nullcontext(None) as report:
            calibrated, info["calibration"] = calibrate_scalers(  # at the learngene's resolution
                gene,
                target.model_copy(update={"img_size": gene.arch.img_size}),
                calibrate,
                data_dir=data_dir,
                samples=calibrate_samples,
                steps=calibrate_steps,
                log=report,
            )
        state = desc_state_dict(calibrated, target)
    else:
        state = desc_state_dict(gene, target, layer_map)
    checked = {}

    def verify(folder):  # --check runs on the written folder before it takes the final name
        at_aux = target == gene.arch and layer_map is None and calibrate is None
        diffs = check_descnet(folder, state, target, gene if at_aux else None)
        checked.update(diffs, tol=tol, passed=all(v <= tol for v in diffs.values()))
        if not checked["passed"]:
            worst = max(v for k, v in diffs.items() if k.startswith("max_abs"))
            raise CheckError(f"--check failed: max abs difference {worst:.3g} > {tol:g}; nothing was written")

    write_descnet(
        state, target, output, gene.meta.input.model_dump(), info, force=force, verify=verify if check else None
    )
    result = {
        "output": str(output),
        "method": gene.method,
        "depth": target.depth,
        "width": target.embed_dim,
        "num_heads": target.num_heads,
        "num_classes": target.num_classes,
        "params": target.num_params(),
        "layers": info["layers"],
        "head": info["head"],
        "width_source": info["width_source"],
    }
    for key in ("selection", "size_specific"):
        if key in info:
            result[key] = info[key]
    if "calibration" in info:
        result["calibration"] = info["calibration"]
    if check:
        result["check"] = checked
    return result
