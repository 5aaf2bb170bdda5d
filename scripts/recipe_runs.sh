#!/usr/bin/env bash
# The reference recipe on the 5k and 10k CIFAR-10 subsets, ResNet-20 and SE-ResNet-20:
# four `minise train` runs at once (on one GPU they share the card; on a CPU run them one by one).
#   usage: scripts/recipe_runs.sh [cpu|cuda] [OUT_DIR]        (data: $MINISE_DATA)
set -euo pipefail
device=${1:-cuda}
out=${2:-runs/recipe}
mkdir -p "$out"
for model in resnet20 se_resnet20; do
  for n in 5000 10000; do
    minise train --device "$device" --model "$model" --train-subset "$n" --epochs 30 --no-progress \
      --out "$out/${model}_${n}" > "$out/${model}_${n}.log" 2>&1 &
  done
done
wait
tail -n 1 "$out"/*.log
