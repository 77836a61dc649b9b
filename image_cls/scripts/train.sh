#!/usr/bin/env bash
# Train one paper row: a preset of image_cls/configs, launched with torchrun or SLURM.
#
#   DATA_PATH=/data/imagenet LLM_PATH=/ckpt/llama-7b GPUS=4 image_cls/scripts/train.sh vit_small_llama torchrun
#   DATA_PATH=... LLM_PATH=... PARTITION=gpu GPUS=4 image_cls/scripts/train.sh vit_small_llama slurm
#   image_cls/scripts/train.sh vit_small_baseline torchrun --epochs 10      # extra flags go to image_cls.train
#
# Environment: DATA_PATH (ImageNet root with train/ and val/, or train.tar and val.tar), LLM_PATH (LLaMA-7B: Meta
# dir, HF dir or .gguf; needed by every preset with an LLM block, the mlp/random ones read only its config),
# RUNS (output root, default runs/image_cls; the run goes to RUNS/PRESET), DRY_RUN=1 (print the command only),
# plus the launcher's own variables (tools/dist_train.sh: GPUS, NNODES, ...; tools/slurm_train.sh: GPUS,
# GPUS_PER_NODE, PARTITION, SRUN_ARGS, ...). The presets hold the paper's recipe for 4 GPUs x 256 images
# (global batch 1024; --lr is per 512 images and scaled by the global batch, so other GPU counts keep the rule).
set -euo pipefail

usage="usage: [DATA_PATH=D] [LLM_PATH=L] [RUNS=R] [DRY_RUN=1] $0 PRESET torchrun|slurm [TRAIN ARGS...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
PRESET=$1
LAUNCHER=$2
shift 2

REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG="$REPO_ROOT/image_cls/configs/$PRESET.yaml"
[ -f "$CONFIG" ] || { echo "error: no preset $CONFIG (see image_cls/scripts/paper_rows.txt)" >&2; exit 2; }
case "$LAUNCHER" in
    torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
    slurm) LAUNCH=(env JOB_NAME="$PRESET" "$REPO_ROOT/tools/slurm_train.sh") ;;
    *) echo "error: launcher must be torchrun or slurm, got '$LAUNCHER'" >&2; exit 2 ;;
esac

ARGS=(--config "$CONFIG" --output-dir "${RUNS:-runs/image_cls}/$PRESET")
[ -n "${DATA_PATH:-}" ] && ARGS+=(--data-path "$DATA_PATH")
VARIANT=$(sed -n 's/^llm_variant: *\([a-z_]*\).*/\1/p' "$CONFIG")
if [ "$VARIANT" != "none" ]; then
    if [ -z "${LLM_PATH:-}" ] && [ -z "${DRY_RUN:-}" ]; then
        echo "error: $PRESET (llm_variant $VARIANT) needs LLM_PATH=<LLaMA-7B checkpoint>" >&2
        exit 2
    fi
    ARGS+=(--llm-path "${LLM_PATH:-\$LLM_PATH}")
fi

CMD=("${LAUNCH[@]}" image_cls.train "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/\\\$LLM_PATH/$LLM_PATH/; s/ $//'
    echo
    exit 0
fi
exec "${CMD[@]}"
