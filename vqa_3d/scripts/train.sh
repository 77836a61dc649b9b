#!/usr/bin/env bash
# Train one SQA3D row: a preset of vqa_3d/configs, launched with torchrun or SLURM (tools/preset_lib.sh does the rest;
# tools/train_paper_rows.sh vqa_3d runs every row of vqa_3d/scripts/paper_rows.txt).
#
#   SQA3D_PATH=data/sqa_task/balanced SCANNET_DATA=data/scannet/scannet_data GLOVE=data/glove.p \
#       ANSWER_VOCAB=data/qa/answer_counter.json LLM_PATH=/ckpt/llama-7b GPUS=1 \
#       vqa_3d/scripts/train.sh sqa3d_paper_llama torchrun
#   ... PARTITION=gpu GPUS=1 vqa_3d/scripts/train.sh sqa3d_upstream slurm --epochs 10   # extra flags: train.py's
#
# Environment: SQA3D_PATH (balanced question/annotation JSONs), SCANNET_DATA (ScanQA's scannet_data/, from
# python -m vqa_3d.prepare), GLOVE (ScanRefer's glove.p, GloVe text, or .npy + .vocab.txt), ANSWER_VOCAB (optional:
# upstream's answer_counter.json; unset builds the vocabulary from the training answers), SCANNET_SCANS (optional:
# scans/ holding <scene>/<scene>.txt), LLM_PATH (LLaMA-7B; presets with an LLM block, mlp/random read only its
# config), RUNS (output root, default runs/vqa_3d), SEED, DRY_RUN=1 (print the command only), plus the launcher's
# variables (tools/dist_train.sh: GPUS, ...; tools/slurm_train.sh: GPUS, PARTITION, SRUN_ARGS, ...). The batch size is
# per process: the paper's 32 (upstream's 16) assume one GPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="SQA3D_PATH=D SCANNET_DATA=D GLOVE=F [ANSWER_VOCAB=F] [SCANNET_SCANS=D] [LLM_PATH=L]"
task_args() {
    need_arg --sqa-path SQA3D_PATH "SQA3D balanced/ folder"
    need_arg --scannet-data SCANNET_DATA "ScanQA scannet_data/ folder"
    need_arg --glove GLOVE "GloVe file (glove.p, text or .npy)"
    opt_arg --answer-vocab ANSWER_VOCAB
    opt_arg --scannet-scans SCANNET_SCANS
}
train_main vqa_3d "$@"
