#!/usr/bin/env bash
# Re-creates the reference ancestor shipped in lgtool/ancestors/fmnist-vit128/ (alias: fmnist-vit).
# A plain ViT (width 128, 2 heads, depth 8, patch 7, no class token, average pooling) trained from timm's
# init on all 60,000 Fashion-MNIST training images. The epoch count was fixed before training; the shipped
# weights are the last epoch (last/), so nothing was chosen on the test split.
set -euo pipefail
out=${1:-runs/ancestor}
mkdir -p "$(dirname "$out")"  # lgtool writes into existing folders only
lgtool finetune --init scratch --data fashion-mnist \
  --width 128 --num-heads 2 --depth 8 --patch-size 7 \
  --epochs 30 --batch-size 128 --lr 1e-3 --warmup-epochs 2 --weight-decay 0.05 \
  --label-smoothing 0.1 --drop-path 0.1 --augment crop-flip --seed 0 \
  -o "$out" "${@:2}"

# Ship the last epoch as package data: the hub-layout folder finetune wrote, with a model card that says
# how it was made. (Run from the repository root; pass a second argument to write elsewhere.)
dest=${SHIP_TO:-lgtool/ancestors/fmnist-vit128}
python - "$out/last" "$dest" <<'PY'
import json, math, shutil, sys
from pathlib import Path

from safetensors import safe_open

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
config = json.loads((src / "config.json").read_text())
tune = config["lgtool"]["finetune"]
tune.setdefault("train_samples", 60000)
config["lgtool"]["shipped_as"] = "fmnist-vit"
config["lgtool"]["command"] = "examples/train_ancestor.sh"
args = config["model_args"]
with safe_open(str(src / "model.safetensors"), "pt") as f:
    params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
card = f"""# fmnist-vit: the reference ancestor shipped with lgtool

A plain timm `VisionTransformer` (width {args['embed_dim']}, {args['num_heads']} heads, depth {args['depth']},
patch {args['patch_size']} on {args['img_size']} px gray images, no class token, average pooling, final norm
before pooling) trained from timm's initialization on all {tune['train_samples']:,} Fashion-MNIST training
images for {tune['epochs']} epochs: **{tune['top1']:.4f} top-1** on the 10,000-image test split (last epoch;
the epoch count was fixed before training, nothing was chosen on the test split). {params:,} parameters.

It is the "pretrained model" of lgtool's embedded default: `--ancestor fmnist-vit` in `learn`, `finetune`
and `bench`. Its training cost ({tune['epochs'] * tune['train_samples']:,} images) is paid once, like any
pretrained model's.

Made by `examples/train_ancestor.sh` (lgtool finetune --init scratch, lr {tune['lr']:g}, batch
{tune['batch_size']}, seed {tune['seed']}; see the script for every flag). Load it without lgtool:

```python
timm.create_model("local-dir:PATH/TO/fmnist-vit128", pretrained=True)
```

Data: Fashion-MNIST, (c) Zalando SE, MIT licence. Inputs: 28x28 gray, normalized with mean
{config['pretrained_cfg']['mean']} and std {config['pretrained_cfg']['std']}.
"""
dest.mkdir(parents=True, exist_ok=True)
shutil.copyfile(src / "model.safetensors", dest / "model.safetensors")
(dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
(dest / "README.md").write_text(card)
print(f"shipped {src} -> {dest}: top-1 {tune['top1']:.4f}, {params:,} parameters")
PY
