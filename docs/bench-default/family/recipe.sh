#!/usr/bin/env bash
# Rebuilds the family `lgtool bench` handed over beside this file, size by size, by the route the bench chose there.
# Run as it is, it retrains on the bench's own subset; for your full data, e.g.:
#   DATA=/data/my-images TRAIN_SAMPLES= OUT=my-family bash -e recipe.sh
# Each size's model ends in $OUT/<size>/ (used as expanded) or $OUT/<size>/last/ (fine-tuned).
set -euo pipefail
LGTOOL=${LGTOOL:-lgtool}
ANCESTOR=${ANCESTOR:-fmnist-vit}
DATA=${DATA:-fashion-mnist}
DATA_DIR=${DATA_DIR-}            # Fashion-MNIST's IDX folder, if not the default
TRAIN_SAMPLES=${TRAIN_SAMPLES-4000}   # empty: every training image
VAL_FRACTION=${VAL_FRACTION:-0.1}   # held out for validation, as the bench did
SEED=${SEED:-0}
OUT=${OUT:-family-rebuilt}

data=(--data "$DATA" --seed "$SEED" --val-fraction "$VAL_FRACTION")
if [ -n "$DATA_DIR" ]; then data+=(--data-dir "$DATA_DIR"); fi
if [ -n "$TRAIN_SAMPLES" ]; then data+=(--train-samples "$TRAIN_SAMPLES"); fi
mkdir -p "$OUT"

# --- d2-w64: weight-selection@2 (in the bench: validation top-1 0.6875, test 0.7063) ---
$LGTOOL expand --ancestor "$ANCESTOR" --depth 2 --width 64 --num-heads 2 --layers spaced -o "$OUT/d2-w64.init"
$LGTOOL finetune "$OUT/d2-w64.init" "${data[@]}" --epochs 2 --lr 0.002 --warmup-epochs 0.2 --batch-size 128 -o "$OUT/d2-w64"

# --- d6-w64: weight-selection@2 (in the bench: validation top-1 0.7875, test 0.7964) ---
$LGTOOL expand --ancestor "$ANCESTOR" --depth 6 --width 64 --num-heads 2 --layers first -o "$OUT/d6-w64.init"
$LGTOOL finetune "$OUT/d6-w64.init" "${data[@]}" --epochs 2 --lr 0.002 --warmup-epochs 0.2 --batch-size 128 -o "$OUT/d6-w64"

# --- d12-w64: weight-selection@2 (in the bench: validation top-1 0.8050, test 0.8236) ---
$LGTOOL expand --ancestor "$ANCESTOR" --depth 12 --width 64 --num-heads 2 --layers spaced -o "$OUT/d12-w64.init"
$LGTOOL finetune "$OUT/d12-w64.init" "${data[@]}" --epochs 2 --lr 0.002 --warmup-epochs 0.2 --batch-size 128 -o "$OUT/d12-w64"
echo "d2-w64: $OUT/d2-w64/last"
echo "d6-w64: $OUT/d6-w64/last"
echo "d12-w64: $OUT/d12-w64/last"
