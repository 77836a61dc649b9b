#!/usr/bin/env bash
# Fine-tune one paper row: a preset of point_cloud/configs from Point-BERT.pth, launched with torchrun or SLURM.
# tools/preset_lib.sh does the rest; tools/train_paper_rows.sh point_cloud runs every row.
#
#   SCANOBJECTNN_PATH=data/ScanObjectNN POINT_BERT=ckpt/Point-BERT.pth LLM_PATH=/ckpt/llama-7b GPUS=4 \
#       point_cloud/scripts/train.sh scanobjectnn_hardest_llama torchrun
#   MODELNET_PATH=data/ModelNet/modelnet40_normal_resampled POINT_BERT=... PARTITION=gpu GPUS=4 \
#       point_cloud/scripts/train.sh modelnet40_8k_baseline slurm
#   point_cloud/scripts/train.sh scanobjectnn_objectbg_baseline torchrun --epochs 10   # extra flags: train.py's
#
# Environment: SCANOBJECTNN_PATH (folder with main_split/ and main_split_nobg/; scanobjectnn_* presets),
# MODELNET_PATH (modelnet40_normal_resampled/; modelnet40_* presets), POINT_BERT (the ShapeNet-pretrained
# Point-BERT.pth every paper row fine-tunes from), LLM_PATH (LLaMA-7B: Meta dir, HF dir or .gguf; presets with an
# LLM block, mlp/random read only its config), RUNS (output root, default runs/point_cloud; the run goes to
# RUNS/PRESET, or RUNS/PRESET/seedN with SEED=N), DRY_RUN=1 (print the command only), plus the launcher's own
# variables (tools/dist_train.sh: GPUS, ...; tools/slurm_train.sh: GPUS, PARTITION, SRUN_ARGS, ...). The presets
# hold a total batch of 32 (the paper's 4 GPUs x 8), split over however many processes run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[SCANOBJECTNN_PATH=D|MODELNET_PATH=D] [POINT_BERT=P] [LLM_PATH=L]"
task_args() {
    case "$PRESET" in
        modelnet40_*) need_arg --data-path MODELNET_PATH "modelnet40_normal_resampled folder" ;;
        *) need_arg --data-path SCANOBJECTNN_PATH "ScanObjectNN folder with main_split/ and main_split_nobg/" ;;
    esac
    need_arg --ckpts POINT_BERT "ShapeNet-pretrained Point-BERT.pth"
}
train_main point_cloud "$@"
