#!/usr/bin/env bash
# Train one paper row: a preset of image_cls/configs, launched with torchrun or SLURM (tools/preset_lib.sh does the
# rest; tools/train_paper_rows.sh image_cls runs every row).
#
#   DATA_PATH=/data/imagenet LLM_PATH=/ckpt/llama-7b GPUS=4 image_cls/scripts/train.sh vit_small_llama torchrun
#   DATA_PATH=... LLM_PATH=... PARTITION=gpu GPUS=4 image_cls/scripts/train.sh vit_small_llama slurm
#   image_cls/scripts/train.sh vit_small_baseline torchrun --epochs 10      # extra flags go to image_cls.train
#
# Environment: DATA_PATH (ImageNet root with train/ and val/, or train.tar and val.tar), LLM_PATH (LLaMA-7B: Meta
# dir, HF dir or .gguf; needed by every preset with an LLM block, the mlp/random ones read only its config),
# RUNS (output root, default runs/image_cls; the run goes to RUNS/PRESET, or RUNS/PRESET/seedN with SEED=N),
# DRY_RUN=1 (print the command only), plus the launcher's own variables (tools/dist_train.sh: GPUS, NNODES, ...;
# tools/slurm_train.sh: GPUS, GPUS_PER_NODE, PARTITION, SRUN_ARGS, ...). The presets hold the paper's recipe for
# 4 GPUs x 256 images (global batch 1024; --lr is per 512 images and scaled by the global batch, so other GPU
# counts keep the rule).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[DATA_PATH=D] [LLM_PATH=L]"
task_args() {
    opt_arg --data-path DATA_PATH   # unset: the preset's data_path
}
train_main image_cls "$@"
