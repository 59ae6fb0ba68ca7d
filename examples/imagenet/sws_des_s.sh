#!/usr/bin/env bash
# SWS Des-S: expand the SWS Aux-S learngene (sws_aux_s.sh) into 12-layer Desc-Nets of width 384
# (6 heads) and fine-tune them on ImageNet-1K with the official Desc-Net recipe.
#
# What the paper reports (Xia et al., IJCAI 2024, arXiv 2404.16897; abstract-level, the per-depth
# numbers of its Fig. 4 and the downstream Fig. 5 for Des-S-12 / Des-B-12 are not in our reference):
#   - Better than many models trained from scratch with about 6.6x less total training cost; in some cases
#     better after only 1 epoch of tuning.
#   - About 20x fewer stored parameters and 10x less pre-training than pre-training + fine-tuning each size.
#
# Official settings (SWS README, Des-S 12 layers; methods reference section 3.4):
#   10 epochs, 128 images x 4 GPUs, lr 5e-5 at 512 images/step (Des-B: 1e-5), warmup 0, cosine to
#   min-lr 1e-6, wd 0.05, no distillation, drop-path 0.1, seed 123, the same augmentation as the Aux
#   (RandAugment, erasing 0.25, mixup 0.8 / cutmix 1.0, smoothing 0.1). Stage map for 12 layers:
#   --layers-source 0,0,0,1,1,1,2,2,3,3,4,4 (stages of 3,3,2,2,2), passed here as --layer-map; other
#   depths use lgtool's rule (even split, remainder to the earliest stages), which gives the same map at 12.
# Choices: no weight EMA (kept but unused officially, pitfall P9); --bf16 for fp16 AMP; head copied
#   from the learngene (1000 ImageNet classes, as the official loader does for IMNET).
#
# Usage:  DATA=/data/imagenet OUT=runs/imagenet examples/imagenet/sws_des_s.sh [extra finetune flags]
# Environment: DATA, OUT, GENE (default $OUT/sws_aux_s.safetensors), DEPTHS (space-separated, default 12;
#   the older official code registers 6..15), NPROC, BATCH (per GPU), EPOCHS, WORKERS.
# Overrides: all arguments are appended to each `lgtool finetune` command (last occurrence wins), e.g.
#   EPOCHS=1 NPROC=1 DATA=tiny/ GENE=gene.safetensors DEPTHS=5 sws_des_s.sh --batch-size 4
set -euo pipefail

DATA=${DATA:-/data/imagenet}
OUT=${OUT:-runs/imagenet}
GENE=${GENE:-$OUT/sws_aux_s.safetensors}
DEPTHS=${DEPTHS:-12}
NPROC=${NPROC:-4}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-10}
WORKERS=${WORKERS:-10}

source "$(dirname "${BASH_SOURCE[0]}")/_deit.sh"  # lgtool_run, DEIT_AUGMENT

if [ ! -f "$GENE" ]; then
  echo "sws_des_s.sh: no learngene at $GENE; run sws_aux_s.sh first or set GENE" >&2
  exit 3
fi
for depth in $DEPTHS; do
  layer_map=()
  if [ "$depth" -eq 12 ]; then layer_map=(--layer-map 0,0,0,1,1,1,2,2,3,3,4,4); fi
  lgtool expand "$GENE" --depth "$depth" ${layer_map[@]+"${layer_map[@]}"} --check --force \
    -o "$OUT/sws_des_s_d$depth"
  lgtool_run finetune "$OUT/sws_des_s_d$depth" \
    --data "$DATA" --workers "$WORKERS" \
    --epochs "$EPOCHS" --batch-size "$BATCH" \
    --lr 5e-5 --lr-base-size 512 --min-lr 1e-6 --warmup-epochs 0 --weight-decay 0.05 \
    "${DEIT_AUGMENT[@]}" \
    --drop-path 0.1 --seed 123 --bf16 \
    -o "$OUT/sws_des_s_d${depth}_tuned" "$@"
done
