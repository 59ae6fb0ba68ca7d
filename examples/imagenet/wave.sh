#!/usr/bin/env bash
# WAVE: learn WAVE weight templates (per matrix type, shared by every layer and size, combined with
# per-layer Kronecker scalers) in a 12-layer Aux-Net distilled from an ImageNet-1K ancestor.
# Then run wave_des.sh. WAVE has no public code: everything below that is not an abstract statement is a
# reconstruction (methods reference section 4, pitfall P16) and marked [S] (secondary paper notes) or [G]
# (our guess).
#
# What the paper reports (Feng et al., "WAVE: Weight Templates for Adaptive Initialization of
# Variable-sized Models", CVPR 2025, arXiv 2406.17503; abstract-level, no per-size table in our reference):
#   - State-of-the-art initialization of models of various depths and widths; beats direct pre-training of
#     n entire models, especially small ones, saving about n x compute and 5x storage.
#   - Templates are task-agnostic: average +1.8% and +1.2% on 7 downstream datasets (over two baselines).
#   - [S] Desc-Nets fine-tuned 10 epochs after initialization outperform 150-epoch direct pre-training.
#
# Settings: the shared DeiT recipe of the learngene line (reference 1.3: 128 images x 4 GPUs, lr 5e-4 at
#   512 images/step, wd 0.05, warmup 5, min-lr 1e-5, RandAugment, erasing 0.25, mixup 0.8 / cutmix 1.0,
#   smoothing 0.1), plus:
#   - [S] 150 epochs on ImageNet-1K; loss KL + CE (not pure KD): --alpha 0.5 weighs them equally (half
#     their sum; AdamW is nearly insensitive to that factor), KL averaged per image (--kd-reduction
#     batchmean, the usual KL; the paper's normalization is unknown).
#   - [S] ancestry: a pre-trained ViT-B, hence ANCESTOR=deit_base.
#   - [G] Aux at the ancestor's width (base: 768, 12 heads of 64), depth 12; templates of the head dim
#     (64 x 64), lgtool's default count per matrix type; set WIDTH=small for a cheaper Aux.
#   - [G] drop-path 0.1 and seed 0 (lgtool/DeiT defaults); no weight EMA; --bf16.
#
# Usage:  DATA=/data/imagenet OUT=runs/imagenet NPROC=4 examples/imagenet/wave.sh [extra learn flags]
# Environment: DATA, OUT, ANCESTOR, ANCESTOR_WEIGHTS (local weights for ANCESTOR), WIDTH (Aux width,
#   default base), NPROC (processes = GPUs; 1 runs plain `lgtool`), BATCH (per GPU), EPOCHS, WORKERS.
# Overrides: all arguments are appended to the `lgtool learn` command and the last occurrence of a flag
#   wins, e.g. EPOCHS=1 NPROC=1 DATA=tiny/ ANCESTOR=fmnist-vit WIDTH=64 wave.sh --batch-size 4
set -euo pipefail

DATA=${DATA:-/data/imagenet}
OUT=${OUT:-runs/imagenet}
ANCESTOR=${ANCESTOR:-deit_base}
ANCESTOR_WEIGHTS=${ANCESTOR_WEIGHTS:-}
WIDTH=${WIDTH:-base}
NPROC=${NPROC:-4}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-150}
WORKERS=${WORKERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/_deit.sh"  # lgtool_run, DEIT_AUGMENT

mkdir -p "$OUT"
lgtool_run learn --ancestor "$ANCESTOR" ${ANCESTOR_WEIGHTS:+--ancestor-weights "$ANCESTOR_WEIGHTS"} \
  --method wave --width "$WIDTH" --aux-depth 12 \
  --data "$DATA" --workers "$WORKERS" \
  --epochs "$EPOCHS" --batch-size "$BATCH" \
  --lr 5e-4 --lr-base-size 512 --min-lr 1e-5 --warmup-epochs 5 --weight-decay 0.05 \
  --kd soft --alpha 0.5 --tau 1.0 --kd-reduction batchmean \
  "${DEIT_AUGMENT[@]}" \
  --drop-path 0.1 --seed 0 --bf16 \
  -o "$OUT/wave.safetensors" "$@"
