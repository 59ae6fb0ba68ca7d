#!/usr/bin/env bash
# TLEG Des-S: expand the TLEG Aux-S learngene (tleg_aux_s.sh) into Desc-Nets of width 384 whose layer l
# of L gets intercept + (l-1)/L * slope, and fine-tune them on ImageNet-1K with the official recipe.
#
# What the paper reports (Xia et al., AAAI 2024, arXiv 2312.05614; abstract-level, its per-depth table
# is not in our reference):
#   - Comparable to or better than many models trained from scratch, with about 2x less training cost.
#   - About 19x fewer parameters stored and 5x less pre-training than pre-training + fine-tuning per depth.
#
# Official settings (MaskLG @ 6e30a5c README + Yuanmou conf_train_des_*.yaml; methods reference 2.4):
#   Des-S 35 epochs (the Yuanmou README trains deit_small L11 45 epochs "for better performance"),
#   128 images x 4 GPUs, lr 5e-4 at 512 images/step, warmup 0, cosine to min-lr 1e-5, wd 0.05,
#   no distillation, drop-path 0.1, the Aux's augmentation (RandAugment, erasing 0.25, mixup 0.8 /
#   cutmix 1.0, smoothing 0.1), seed 123. Depths: the Yuanmou code registers Des-S L3..L12.
# Choices: 35 epochs for every depth (set EPOCHS=45 for the L11 exception); no weight EMA (kept but unused
#   officially, pitfall P9); --bf16 for fp16 AMP; head copied from the learngene (1000 classes, as the
#   official loader does for IMNET).
#
# Usage:  DATA=/data/imagenet OUT=runs/imagenet examples/imagenet/tleg_des_s.sh [extra finetune flags]
# Environment: DATA, OUT, GENE (default $OUT/tleg_aux_s.safetensors), DEPTHS (space-separated, default 12,
#   e.g. "3 4 5 6 7 8 9 10 11 12"), NPROC, BATCH (per GPU), EPOCHS, WORKERS.
# Overrides: all arguments are appended to each `lgtool finetune` command (last occurrence wins), e.g.
#   EPOCHS=1 NPROC=1 DATA=tiny/ GENE=gene.safetensors DEPTHS=3 tleg_des_s.sh --batch-size 4
set -euo pipefail

DATA=${DATA:-/data/imagenet}
OUT=${OUT:-runs/imagenet}
GENE=${GENE:-$OUT/tleg_aux_s.safetensors}
DEPTHS=${DEPTHS:-12}
NPROC=${NPROC:-4}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-35}
WORKERS=${WORKERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/_deit.sh"  # lgtool_run, DEIT_AUGMENT

if [ ! -f "$GENE" ]; then
  echo "tleg_des_s.sh: no learngene at $GENE; run tleg_aux_s.sh first or set GENE" >&2
  exit 3
fi
for depth in $DEPTHS; do
  lgtool expand "$GENE" --depth "$depth" --check --force -o "$OUT/tleg_des_s_d$depth"
  lgtool_run finetune "$OUT/tleg_des_s_d$depth" \
    --data "$DATA" --workers "$WORKERS" \
    --epochs "$EPOCHS" --batch-size "$BATCH" \
    --lr 5e-4 --lr-base-size 512 --min-lr 1e-5 --warmup-epochs 0 --weight-decay 0.05 \
    "${DEIT_AUGMENT[@]}" \
    --drop-path 0.1 --seed 123 --bf16 \
    -o "$OUT/tleg_des_s_d${depth}_tuned" "$@"
done
