#!/usr/bin/env bash
# Fine-tune one paper row: a preset of vqa_2d/configs (METER from CLIP ViT-B/32 + roberta-base), torchrun or SLURM.
# tools/preset_lib.sh does the rest; tools/train_paper_rows.sh vqa_2d runs every row.
#
#   VQA_PATH=data/vqa_arrow CLIP_PATH=ckpt/ViT-B-32.pt ROBERTA_PATH=ckpt/roberta-base LLM_PATH=/ckpt/llama-7b \
#       GPUS=4 vqa_2d/scripts/train.sh vqav2_llama torchrun
#   F30K_PATH=data/f30k_arrow CLIP_PATH=... ROBERTA_PATH=... PARTITION=gpu GPUS=4 vqa_2d/scripts/train.sh f30k_baseline slurm
#
# Environment: VQA_PATH (METER's vqav2_*.arrow folder; vqav2_* presets), VQA_ANNOTATIONS (optional: the official
# v2_mscoco_val2014_annotations.json, for the official accuracy on val), F30K_PATH (f30k_caption_karpathy_*.arrow
# folder; f30k_* presets), CLIP_PATH (OpenAI ViT-B-32.pt or an HF CLIP directory), ROBERTA_PATH (the roberta-base
# directory: tokenizer and weights), LLM_PATH (LLaMA-7B; presets with an LLM block), RUNS (default runs/vqa_2d),
# SEED, DRY_RUN=1, plus the launcher's variables (tools/dist_train.sh, tools/slurm_train.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[VQA_PATH=D|F30K_PATH=D] [CLIP_PATH=P] [ROBERTA_PATH=D] [LLM_PATH=L]"
task_args() {
    case "$PRESET" in
        vqav2_*)
            need_arg --data-path VQA_PATH "folder with METER's vqav2_train.arrow / vqav2_val.arrow"
            opt_arg --annotations VQA_ANNOTATIONS ;;
        *) need_arg --data-path F30K_PATH "folder with METER's f30k_caption_karpathy_*.arrow" ;;
    esac
    need_arg --clip-path CLIP_PATH "OpenAI ViT-B-32.pt or an HF CLIP ViT-B/32 directory"
    need_arg --text-path ROBERTA_PATH "roberta-base directory"
    need_arg --tokenizer ROBERTA_PATH "roberta-base directory"
}
train_main vqa_2d "$@"
