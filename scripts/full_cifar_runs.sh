#!/usr/bin/env bash
# The recipe on all of CIFAR-10: every model x seed as its own `minise train` run, one queue per
# GPU (round-robin). Re-running the script continues: a run with a last.npz is resumed (a finished
# one returns at once), so a grid larger than one sitting is finished by calling it again.
#   usage: scripts/full_cifar_runs.sh [OUT_DIR]                     (data: $MINISE_DATA)
#   settings from the environment (defaults in brackets):
#     MODELS [resnet20 se_resnet20 resnet56 se_resnet56]   SEEDS [0 1 2]   EPOCHS [30]
#     GPUS [1]   DEVICE [cuda]   TRAIN_SUBSET [0: all]   TEST_SUBSET [0: all]
set -euo pipefail
out=${1:-runs/full}
models=(${MODELS:-resnet20 se_resnet20 resnet56 se_resnet56})
seeds=(${SEEDS:-0 1 2})
gpus=${GPUS:-1}
mkdir -p "$out"

runs=()
for seed in "${seeds[@]}"; do
  for model in "${models[@]}"; do runs+=("${model}_seed${seed}"); done
done

queue() {  # queue GPU: the runs whose index is GPU mod GPUS, one after another
  local gpu=$1 i name dir
  for ((i = gpu; i < ${#runs[@]}; i += gpus)); do
    name=${runs[i]}; dir="$out/$name"
    if [[ -f "$dir/last.npz" ]]; then
      CUDA_VISIBLE_DEVICES=$gpu minise train --resume "$dir" --no-progress >> "$out/$name.log" 2>&1
    else
      # no last.npz: no epoch finished, so whatever a killed first epoch left is replaced
      CUDA_VISIBLE_DEVICES=$gpu minise train --overwrite --device "${DEVICE:-cuda}" --model "${name%_seed*}" \
        --seed "${name##*_seed}" --epochs "${EPOCHS:-30}" --train-subset "${TRAIN_SUBSET:-0}" \
        --test-subset "${TEST_SUBSET:-0}" --no-progress --out "$dir" >> "$out/$name.log" 2>&1
    fi
  done
}
for ((g = 0; g < gpus; g++)); do queue "$g" & done
wait
for name in "${runs[@]}"; do printf '%-24s %s\n' "$name" "$(tail -n 1 "$out/$name.log")"; done
