#!/usr/bin/env bash
# WAVE Desc-Nets: for each requested size, learn the size's Kronecker scalers on a little ImageNet data with
# the templates frozen (expand --calibrate), write the Desc-Net, and fine-tune it on ImageNet-1K.
# The learngene comes from wave.sh. [S] = secondary paper notes, [G] = our guess (no public WAVE code).
#
# What the paper reports (Feng et al., CVPR 2025, arXiv 2406.17503; abstract-level):
#   - Better than direct pre-training of each size, especially small ones, at about n x less compute and
#     5x less storage for n sizes; +1.8% / +1.2% on average on 7 downstream datasets.
#   - [S] 10 epochs of training after WAVE initialization outperform 150 epochs of direct pre-training;
#     the scalers have only a few thousand parameters and are learned from minimal data.
#
# Settings:
#   - Default size: depth 12, width small (384, 6 heads of 64), the Des-S of the SWS/TLEG scripts, for
#     comparison; WIDTH / DEPTHS choose others (the width must be a multiple of the template size, 64).
#   - [G] calibration on CAL_SAMPLES=12800 images (about 1% of ImageNet-1K, 13 per class) for
#     CAL_STEPS=500 steps: "minimal training data" in the paper, amount unknown.
#   - [S] 10 fine-tuning epochs; [G] the rest as the TLEG Desc-Net recipe (reference 2.4: lr 5e-4 at 512
#     images/step, warmup 0, min-lr 1e-5, wd 0.05, drop-path 0.1, no distillation, the Aux's augmentation),
#     seed 123, no weight EMA, --bf16.
#
# Usage:  DATA=/data/imagenet OUT=runs/imagenet examples/imagenet/wave_des.sh [extra finetune flags]
# Environment: DATA, OUT, GENE (default $OUT/wave.safetensors), WIDTH (default small), DEPTHS
#   (space-separated, default 12), CAL_SAMPLES, CAL_STEPS, NPROC, BATCH (per GPU), EPOCHS, WORKERS.
# Overrides: all arguments are appended to each `lgtool finetune` command (last occurrence wins), e.g.
#   EPOCHS=1 NPROC=1 CAL_STEPS=2 CAL_SAMPLES=8 DATA=tiny/ GENE=gene.safetensors wave_des.sh --batch-size 4
set -euo pipefail

DATA=${DATA:-/data/imagenet}
OUT=${OUT:-runs/imagenet}
GENE=${GENE:-$OUT/wave.safetensors}
WIDTH=${WIDTH:-small}
DEPTHS=${DEPTHS:-12}
CAL_SAMPLES=${CAL_SAMPLES:-12800}
CAL_STEPS=${CAL_STEPS:-500}
NPROC=${NPROC:-4}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-10}
WORKERS=${WORKERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/_deit.sh"  # lgtool_run, DEIT_AUGMENT

if [ ! -f "$GENE" ]; then
  echo "wave_des.sh: no learngene at $GENE; run wave.sh first or set GENE" >&2
  exit 3
fi
for depth in $DEPTHS; do
  lgtool expand "$GENE" --depth "$depth" --width "$WIDTH" \
    --calibrate "$DATA" --calibrate-samples "$CAL_SAMPLES" --calibrate-steps "$CAL_STEPS" \
    --check --force -o "$OUT/wave_des_d${depth}_$WIDTH"
  lgtool_run finetune "$OUT/wave_des_d${depth}_$WIDTH" \
    --data "$DATA" --workers "$WORKERS" \
    --epochs "$EPOCHS" --batch-size "$BATCH" \
    --lr 5e-4 --lr-base-size 512 --min-lr 1e-5 --warmup-epochs 0 --weight-decay 0.05 \
    "${DEIT_AUGMENT[@]}" \
    --drop-path 0.1 --seed 123 --bf16 \
    -o "$OUT/wave_des_d${depth}_${WIDTH}_tuned" "$@"
done
