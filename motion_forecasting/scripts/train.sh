#!/usr/bin/env bash
# Train one paper row: a preset of motion_forecasting/configs, launched with torchrun or SLURM.
# tools/preset_lib.sh does the rest; tools/train_paper_rows.sh motion_forecasting runs every row.
#
#   AV1_PATH=data/argoverse1 LLM_PATH=/ckpt/llama-7b GPUS=1 motion_forecasting/scripts/train.sh vectornet_av1_llama torchrun
#   AV2_PATH=data/av2 PARTITION=gpu GPUS=1 motion_forecasting/scripts/train.sh vectornet_av2_baseline slurm
#
# Environment: AV1_PATH (folder with train/, val/, map_files/; av1 presets), AV2_PATH (folder with train/, val/;
# av2 presets), CACHE (preprocessing cache root, default RUNS/cache/<dataset>; built on first use, resumable),
# LLM_PATH (LLaMA-7B; presets with an LLM block, mlp/random read only its config), RUNS (output root, default
# runs/motion_forecasting), DRY_RUN=1 (print the command only), plus the launcher's own variables.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[AV1_PATH=D|AV2_PATH=D] [CACHE=D] [LLM_PATH=L]"
task_args() {
    local var=AV1_PATH dataset=av1 layout="train/, val/ and map_files/" root
    case "$PRESET" in *_av2_*) var=AV2_PATH dataset=av2 layout="train/ and val/" ;; esac
    if [ -n "${!var:-}" ]; then root=${!var}
    elif [ -n "${DRY_RUN:-}" ]; then root="\$$var"
    else die "$PRESET needs $var=<Argoverse folder with $layout>"
    fi
    ARGS+=(--train-path "$root/train" --val-path "$root/val")
    if [ "$dataset" = av1 ]; then ARGS+=(--map-dir "$root/map_files"); fi
    ARGS+=(--cache-dir "${CACHE:-${RUNS:-runs/motion_forecasting}/cache/$dataset}")
}
train_main motion_forecasting "$@"
