#!/usr/bin/env bash
# The whole lgtool pipeline as a CI job would run it: every step's JSON feeds the next.
# Usage: examples/pipeline.sh [WORKDIR]   (needs lgtool on PATH, jq, and apt-get install dataset-fashion-mnist)
set -euo pipefail
work=${1:-$(mktemp -d)}
cd "$work"
export HF_HUB_OFFLINE=1

# 1-2. a TLEG learngene distilled from the ancestor shipped with lgtool (fmnist-vit, a pretrained
# 128-wide ViT; a real user passes their own pretrained model), seeded from the ancestor's layers
lgtool learn --ancestor fmnist-vit --method tleg --init ancestor --width 64 --aux-depth 8 --epochs 2 \
   --train-samples 10000 -o tleg.safetensors --json > learn.json
echo "Aux-Net top-1: $(jq -r .aux_top1 learn.json), ancestor: $(jq -r .ancestor_top1 learn.json)"

# 3. what it holds, from the header alone
lgtool inspect tleg.safetensors --json | jq '{method, params, storage_ratio, depths}'

# 4. Desc-Nets of several depths; --check compares plain timm's reload with the in-memory model
for d in 2 4 6 8; do
  lgtool expand tleg.safetensors --depth "$d" --check -o "desc-d$d" --json | jq -c '{depth, params, check}'
done

# 5. fine-tune one of them
lgtool finetune desc-d4 --epochs 1 --train-samples 10000 -o tuned-d4 --json | jq '{best_top1, params}'

# 6. the comparison against scratch, kd-scratch and weight selection, reusing this learngene
lgtool bench --learngene tleg.safetensors --inits tleg,scratch,kd-scratch,weight-selection \
   --depths 2,4 --epochs 1 --max-epochs 4 --train-samples 5000 -o bench --json | jq '.cost'
echo "results in $work/bench"
