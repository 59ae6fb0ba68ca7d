# Shared by the scripts in this folder (sourced, not run): how to launch lgtool, and the DeiT augmentation
# recipe every official learngene and Desc-Net run uses (methods reference, section 1.3).

lgtool_run() { # one process: plain lgtool; several: data-parallel through torchrun (rank 0 writes)
  if [ "$NPROC" -gt 1 ]; then torchrun --nproc-per-node "$NPROC" -m lgtool "$@"; else lgtool "$@"; fi
}

# RandAugment, colour jitter 0.4 (timm drops it next to RandAugment, as in the official runs), random
# erasing 0.25, Mixup 0.8 / CutMix 1.0 switching at 0.5, label smoothing 0.1 folded into the mixed targets.
DEIT_AUGMENT=(
  --aa rand-m9-mstd0.5-inc1 --color-jitter 0.4 --reprob 0.25
  --mixup 0.8 --cutmix 1.0 --mixup-switch-prob 0.5 --smoothing 0.1
)
