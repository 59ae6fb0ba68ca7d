#!/usr/bin/env bash
# SWS Aux-S: distil the SWS learngene (16-layer Aux-Net, 5 stages of 3,3,4,3,3 shared blocks, width 384)
# from an ImageNet-1K ancestor with the official recipe. Then run sws_des_s.sh.
#
# What the paper reports (Xia et al., "Exploring Learngene via Stage-wise Weight Sharing...", IJCAI 2024,
# arXiv 2404.16897; abstract-level numbers, the per-depth table of its Fig. 4 is not in our reference):
#   - Desc-Nets initialized by SWS beat many models trained from scratch on ImageNet-1K while reducing
#     total training cost about 6.6x; in some cases SWS is better after only 1 epoch of tuning.
#   - For variable-sized models: about 20x fewer parameters stored to initialize them and about 10x less
#     pre-training cost than pre-training + fine-tuning each size.
#
# Official settings (eddiexia98/SWS README + main.py defaults; methods reference sections 1.3 and 3.3):
#   Aux-S 150 epochs, 128 images x 4 GPUs, AdamW lr 5e-4 at 512 images/step, wd 0.05, warmup 5 epochs,
#   cosine to min-lr 1e-5, soft KD (alpha 1.0 = pure distillation, tau 1.0, KL summed / (B*C)),
#   RandAugment rand-m9-mstd0.5-inc1, color jitter 0.4, random erasing 0.25 (pixel, 1 box), mixup 0.8,
#   cutmix 1.0 (switch prob 0.5, per batch), label smoothing 0.1 folded into the mixed targets,
#   drop-path 0.1 (the README gives none, main.py's default is 0.1), seed 0 (main.py's default).
# Choices where official sources disagree or lgtool differs:
#   - Teacher: the official code distils from LeViT-384 (timm `levit_384`); this script defaults to
#     ANCESTOR=deit_base (timm deit_base_patch16_224). Set ANCESTOR=levit_384 for the papers' teacher.
#   - Heads: the official Aux-S runs 12 heads of dim 32 while its Desc-S runs 6 of dim 64 (pitfall P5);
#     lgtool keeps the head dim between Aux and Desc-Net, so the Aux-S here has 6 heads (lgtool's default).
#   - Color jitter 0.4 is passed as in the official args, but timm turns color jitter off when RandAugment
#     is on, in the official runs too.
#   - Weight EMA (decay 0.99996) was kept but never used by the official code (pitfall P9): not enabled.
#   - Not available in lgtool: DeiT's repeated-augmentation sampler (3 repeats), warmup starting at 1e-6
#     with the schedule stepped per epoch (lgtool warms up linearly and steps the cosine per optimizer step).
#   - Mixed precision: --bf16 (the official code uses fp16 AMP with a loss scaler).
#
# Usage:  DATA=/data/imagenet OUT=runs/imagenet NPROC=4 examples/imagenet/sws_aux_s.sh [extra learn flags]
# Environment: DATA (ImageFolder with train/ and val/), OUT (output folder), ANCESTOR, ANCESTOR_WEIGHTS
#   (a local weights file for ANCESTOR, for machines without hub access), NPROC (processes = GPUs; 1 runs
#   plain `lgtool`, more run `torchrun -m lgtool`), BATCH (per GPU), EPOCHS, WORKERS (loader processes
#   per GPU). --lr-base-size 512 rescales lr 5e-4 to NPROC x BATCH, so any GPU count keeps the recipe.
# Overrides: all arguments are appended to the `lgtool learn` command and the last occurrence of a flag
#   wins, e.g. a smoke test on a tiny folder:
#   EPOCHS=1 NPROC=1 DATA=tiny/ ANCESTOR=fmnist-vit sws_aux_s.sh --batch-size 4 --width 64 --img-size 32
set -euo pipefail

DATA=${DATA:-/data/imagenet}
OUT=${OUT:-runs/imagenet}
ANCESTOR=${ANCESTOR:-deit_base}
ANCESTOR_WEIGHTS=${ANCESTOR_WEIGHTS:-}
NPROC=${NPROC:-4}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-150}
WORKERS=${WORKERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/_deit.sh"  # lgtool_run, DEIT_AUGMENT

mkdir -p "$OUT"
lgtool_run learn --ancestor "$ANCESTOR" ${ANCESTOR_WEIGHTS:+--ancestor-weights "$ANCESTOR_WEIGHTS"} \
  --method sws --width small --aux-depth 16 --stages 3,3,4,3,3 \
  --data "$DATA" --workers "$WORKERS" \
  --epochs "$EPOCHS" --batch-size "$BATCH" \
  --lr 5e-4 --lr-base-size 512 --min-lr 1e-5 --warmup-epochs 5 --weight-decay 0.05 \
  --kd soft --alpha 1.0 --tau 1.0 --kd-reduction per_logit \
  "${DEIT_AUGMENT[@]}" \
  --drop-path 0.1 --seed 0 --bf16 \
  -o "$OUT/sws_aux_s.safetensors" "$@"
