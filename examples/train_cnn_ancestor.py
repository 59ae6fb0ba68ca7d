"""Re-create `fmnist-cnn`, the second reference ancestor shipped in lgtool/ancestors/fmnist-resnet/.

A small timm ResNet (basic blocks 1-1-1-1, channels 32-64-128-256, output stride 8 so that 28 px images
keep a 4x4 map in the last stages), trained from timm's init on all 60,000 Fashion-MNIST training images
with lgtool's own training loop. The epoch count was fixed before training and the last epoch is shipped,
so nothing was chosen on the test split. It is an ancestor weight selection cannot use: no ViT blocks to
cut, no patch embedding to copy. It is the papers' own setting (a CNN, LeViT, teaching ViT learngenes).

    python examples/train_cnn_ancestor.py runs/cnn-ancestor            # train (resumes if interrupted)
    python examples/train_cnn_ancestor.py runs/cnn-ancestor --ship     # then copy into the package
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lgtool.base.atomic import atomic_dir
from lgtool.base.compat import import_timm
from lgtool.training.data import load_data
from lgtool.training.loop import evaluate, fit
from lgtool.training.settings import TrainConfig

ARCHITECTURE = "resnet18"  # timm's builder; model_args below make it the small variant
MODEL_ARGS = {"layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256], "output_stride": 8, "in_chans": 1}
RECIPE = dict(
    epochs=15, batch_size=128, lr=2e-3, warmup_epochs=1.0, weight_decay=0.05, smoothing=0.1, augment="crop-flip"
)
SHIP_TO = Path(__file__).resolve().parents[1] / "lgtool" / "ancestors" / "fmnist-resnet"


def hub_config(model, view, top1: float, train_samples: int) -> dict:
    return {
        "architecture": ARCHITECTURE,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": "avg",
        "model_args": {**MODEL_ARGS, "num_classes": model.num_classes},
        "pretrained_cfg": {
            "input_size": [view.in_chans, view.img_size, view.img_size],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": list(view.norm.mean),
            "std": list(view.norm.std),
            "num_classes": model.num_classes,
            "first_conv": "conv1",
            "classifier": "fc",
        },
        "lgtool": {
            "init": "scratch",
            "finetune": {"data": "fashion-mnist", "train_samples": train_samples, "top1": top1, **RECIPE, "seed": 0},
            "shipped_as": "fmnist-cnn",
            "command": "python examples/train_cnn_ancestor.py",
        },
    }


CARD = """# fmnist-cnn: the second reference ancestor shipped with lgtool

A small timm ResNet (`{arch}` with {args}: basic blocks 1-1-1-1, output stride 8) trained from timm's
initialization on all {n:,} Fashion-MNIST training images for {epochs} epochs with lgtool's training loop:
**{top1:.4f} top-1** on the 10,000-image test split (last epoch; the epoch count was fixed before training,
nothing was chosen on the test split). {params:,} parameters, {mflop:.1f} MFLOP per image.

It is an ancestor of another architecture family than lgtool's ViTs: weight selection cannot cut a ViT from
it, and learngenes learned from it start from the papers' initialization (`--init official`) and learn
everything by distillation, as in the papers, where LeViT-384 teaches DeiT learngenes.
`--ancestor fmnist-cnn` works in `learn`, `finetune --ancestor` and `bench`.

Made by `python examples/train_cnn_ancestor.py` (see the script for the recipe). Load it without lgtool:

```python
timm.create_model("local-dir:PATH/TO/fmnist-resnet", pretrained=True)
```

Data: Fashion-MNIST, (c) Zalando SE, MIT licence. Inputs: 28x28 gray, normalized with mean {mean} and
std {std}.
"""


def main(out: Path, ship: bool) -> None:
    import torch
    from safetensors.torch import save_file
    from torch.utils.flop_counter import FlopCounterMode

    timm = import_timm()
    data = load_data("fashion-mnist")
    torch.manual_seed(0)
    model = timm.create_model(ARCHITECTURE, num_classes=data.num_classes, **MODEL_ARGS)
    cfg = TrainConfig(kd="none", seed=0, **RECIPE)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.ckpt"
    fit(
        model,
        data,
        data.view,
        cfg,
        identity={"kind": "cnn-ancestor", "architecture": ARCHITECTURE, "model_args": MODEL_ARGS},
        checkpoint=checkpoint,
        resume=checkpoint if checkpoint.is_file() else None,
        on_event=lambda **e: "epoch_end" in e and print(f"epoch {e['epoch_end']}/{e['epochs']}: top-1 {e['top1']:.4f}"),
    )
    top1 = evaluate(model, data.test, data.view)
    config = hub_config(model, data.view, top1, len(data.train))
    with FlopCounterMode(display=False) as flops:
        model.eval()(torch.zeros(1, data.view.in_chans, data.view.img_size, data.view.img_size))
    params = sum(p.numel() for p in model.parameters())
    card = CARD.format(
        arch=ARCHITECTURE, args=json.dumps(MODEL_ARGS), n=len(data.train), epochs=cfg.epochs, top1=top1,
        params=params, mflop=flops.get_total_flops() / 1e6, mean=data.view.norm.mean, std=data.view.norm.std,
    )  # fmt: skip
    dest = SHIP_TO if ship else out / "model"
    with atomic_dir(dest, force=True) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(card)
    print(f"wrote {dest}: top-1 {top1:.4f}, {params:,} parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cnn-ancestor"), "--ship" in sys.argv)
