"""Check `lgtool convert` + `expand` against the papers' own code: an official Aux-S of each method, built by
the official classes, saved as the official main.py saves it, converted, then compared.

    git clone https://github.com/eddiexia98/SWS sws                      # at 2ad3b64
    git clone https://github.com/Robbo4729/MaskLG tleg && git -C tleg checkout 6e30a5c
    python examples/official_parity.py --sws sws --tleg tleg

Prints, per method: the converted Aux-Net's max abs logit difference from the official Aux-Net (as lgtool
runs it, with LayerNorm eps 1e-6, and with the official 1e-5 put back), and whether `expand` at depths
6, 9, 12 and 16 is bitwise the official `gene_tranfer` (TLEG) / `gene_tranfer_1` (SWS). The official code
targets timm 0.6; the one name it imports that timm 1.x dropped (`default_cfgs`) is stubbed here.
Images of 64 px keep it to a minute on a CPU.
"""

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

import lgtool
from lgtool.base.compat import import_timm
from lgtool.convert import convert
from lgtool.family import describe_layers, target_arch
from lgtool.materialize import build_aux, desc_state_dict

MODELS = {"sws": "aux_deit_small_patch16_224_L16_33433", "tleg": "aux_deit_small_patch16_224"}


def parity(method: str, repo: Path, workdir: Path) -> None:
    code = f"""
import sys, warnings, argparse, torch
warnings.filterwarnings("ignore")
sys.path.insert(0, {str(repo.resolve())!r})
from lgtool.base.compat import import_timm
import_timm()
import timm.models.vision_transformer as vt
vt.default_cfgs = getattr(vt, "default_cfgs", {{}})
import aux_models, utils
torch.manual_seed(0)
aux = getattr(aux_models, {MODELS[method]!r})(num_classes=10, img_size=64).eval()
with torch.no_grad():
    for p in aux.parameters():
        p.add_(0.05 * torch.randn_like(p))
state = aux.state_dict()
args = argparse.Namespace(model={MODELS[method]!r}, input_size=64, nb_classes=10)
torch.save({{"model": state, "epoch": 0, "args": args}}, {str(workdir / "checkpoint.pth")!r})
x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
out = {{"x": x, "logits": aux(x).detach()}}
for depth in (6, 9, 12, 16):
    if {method!r} == "sws":
        layers = sys.argv[1:][[6, 9, 12, 16].index(depth)]
        des = utils.gene_tranfer_1(None, state, layers, depth, load_head=True)
    else:
        des = utils.gene_tranfer(None, state, depth, load_head=True)
    out[depth] = des
torch.save(out, {str(workdir / "official.pth")!r})
"""
    gene_path = workdir / "gene.safetensors"
    # SWS's official loader takes the layer map on its command line: give it lgtool's even split.
    layer_maps = []
    if method == "sws":
        probe = lgtool.init_learngene(method, width=384, stages=[3, 3, 4, 3, 3])
        layer_maps = [",".join(map(str, describe_layers(probe, target_arch(probe, d)))) for d in (6, 9, 12, 16)]
    subprocess.run([sys.executable, "-c", code, *layer_maps], check=True, stdout=subprocess.DEVNULL)
    convert(workdir / "checkpoint.pth", gene_path, force=True)
    gene = lgtool.load_learngene(gene_path)
    official = torch.load(workdir / "official.pth", weights_only=True)
    aux = build_aux(gene).eval()
    with torch.no_grad():
        ours = (aux(official["x"]) - official["logits"]).abs().max().item()
        for m in aux.vit.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.eps = 1e-5
        with_eps = (aux(official["x"]) - official["logits"]).abs().max().item()
    print(f"{method}: Aux-Net max abs logit difference {ours:.2e} (lgtool's eps 1e-6), {with_eps:.2e} (eps 1e-5)")
    for depth in (6, 9, 12, 16):
        want = official[depth]
        want["norm.weight"], want["norm.bias"] = want.pop("fc_norm.weight"), want.pop("fc_norm.bias")
        got = desc_state_dict(gene, target_arch(gene, depth))
        same = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        print(f"{method}: depth {depth}: expand is bitwise the official transfer: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sws", type=Path, help="a checkout of eddiexia98/SWS")
    parser.add_argument("--tleg", type=Path, help="a checkout of Robbo4729/MaskLG at 6e30a5c (the TLEG release)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import_timm()
    for method in MODELS:
        repo = getattr(args, method)
        if repo is not None:
            with tempfile.TemporaryDirectory() as tmp:
                parity(method, repo, Path(tmp))


if __name__ == "__main__":
    main()
