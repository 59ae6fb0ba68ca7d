"""The learngene pipeline through the library API: init -> train the Aux-Net -> save -> expand -> evaluate.

    python examples/api.py            (needs Fashion-MNIST: apt-get install dataset-fashion-mnist)

A minimal loop of our own instead of `lgtool learn`, to show that the Aux-Net is an ordinary nn.Module
whose parameters are the learngene's tensors. It trains on labels only (no ancestor), so the numbers are
those of a tiny TLEG net after one epoch, not of a distilled family.
"""

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import lgtool
from lgtool.training.data import load_data
from lgtool.training.loop import evaluate

torch.manual_seed(0)
data = load_data("fashion-mnist", train_samples=10_000)
gene = lgtool.init_learngene(
    "tleg", width=64, num_heads=1, aux_depth=6, img_size=28, patch_size=7, in_chans=1, num_classes=data.num_classes
)
aux = lgtool.build_aux(gene).train()
opt = torch.optim.AdamW(aux.parameters(), lr=2e-3)
for x, y in data.train.batches(data.view, 128, train=True):
    loss = F.cross_entropy(aux(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"Aux-Net (depth 6): top-1 {evaluate(aux, data.test, data.view):.4f}")

path = Path(tempfile.mkdtemp()) / "tleg.safetensors"
aux.to_learngene().save(path)
gene = lgtool.load_learngene(path)
for depth in (3, 6, 9, 12):
    model = lgtool.expand(gene, depth=depth)  # a plain timm VisionTransformer
    params = sum(p.numel() for p in model.parameters())
    top1 = evaluate(model, data.test, data.view)
    print(f"Desc-Net depth {depth:2d}: {params:,} parameters, top-1 before fine-tuning {top1:.4f}")
