#!/usr/bin/env bash
# Fine-tune one paper row: a preset of action_recognition/configs from VideoMAE's SSv2-pretrained checkpoint,
# launched with torchrun or SLURM. tools/preset_lib.sh does the rest; tools/train_paper_rows.sh action_recognition
# runs every row.
#
#   SSV2_LISTS=/data/ssv2/lists SSV2_VIDEOS=/data/ssv2/videos VIDEOMAE_VITS=ckpt/videomae_ssv2_vits.pth \
#       LLM_PATH=/ckpt/llama-7b GPUS=4 action_recognition/scripts/train.sh ssv2_vit_s_llama torchrun
#   ... VIDEOMAE_VITB=ckpt/videomae_ssv2_vitb.pth PARTITION=gpu GPUS=4 \
#       action_recognition/scripts/train.sh ssv2_vit_b_baseline slurm
#   action_recognition/scripts/train.sh ssv2_vit_s_baseline torchrun --epochs 1   # extra flags: train.py's
#
# Environment: SSV2_LISTS (folder with train.csv / val.csv, e.g. from python -m action_recognition.prepare),
# SSV2_VIDEOS (folder the CSVs' relative paths are resolved against; omit when they are absolute),
# VIDEOMAE_VITS / VIDEOMAE_VITB (VideoMAE's SSv2-pretrained videomae_ssv2_vit{s,b}.pth for ssv2_vit_s_* /
# ssv2_vit_b_*), LLM_PATH (LLaMA-7B: Meta dir, HF dir or .gguf; presets with an LLM block, mlp/random read only
# its config), RUNS (output root, default runs/action_recognition; the run goes to RUNS/PRESET, or
# RUNS/PRESET/seedN with SEED=N), DRY_RUN=1 (print the command only), plus the launcher's own variables
# (tools/dist_train.sh: GPUS, ...; tools/slurm_train.sh: GPUS, PARTITION, SRUN_ARGS, ...). The presets hold the
# total batch (total_batch_size), split over however many processes run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[SSV2_LISTS=D] [SSV2_VIDEOS=D] [VIDEOMAE_VITS=P|VIDEOMAE_VITB=P] [LLM_PATH=L]"
task_args() {
    need_arg --data-path SSV2_LISTS "folder with train.csv and val.csv"
    case "$PRESET" in
        ssv2_vit_s_*) need_arg --finetune VIDEOMAE_VITS "VideoMAE's SSv2-pretrained videomae_ssv2_vits.pth" ;;
        *) need_arg --finetune VIDEOMAE_VITB "VideoMAE's SSv2-pretrained videomae_ssv2_vitb.pth" ;;
    esac
    opt_arg --data-root SSV2_VIDEOS   # unset: the CSVs hold absolute paths
}
train_main action_recognition "$@"
