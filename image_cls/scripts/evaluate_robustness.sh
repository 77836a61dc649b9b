#!/usr/bin/env bash
# Evaluate a trained run (or a released ViT-LLaMA checkpoint) on ImageNet and the robustness sets of Table 1.
#
#   DATA_PATH=/data/imagenet IMAGENET_C=/data/imagenet-c IMAGENET_A=/data/imagenet-a IMAGENET_R=/data/imagenet-r \
#       IMAGENET_SKETCH=/data/imagenet-sketch image_cls/scripts/evaluate_robustness.sh runs/image_cls/vit_small_llama
#   LAUNCHER=torchrun GPUS=4 image_cls/scripts/evaluate_robustness.sh vit_llama_official.pth --ema
#
# RUN is a run directory (its checkpoint.pth is used) or a checkpoint file; extra flags go to image_cls.evaluate
# (e.g. --ema, --save-logits logits.npy, --llm-path if the LLM checkpoint moved). Only the sets whose path
# variable is set are evaluated. Results: eval_results.json beside the checkpoint. LAUNCHER: python (default,
# one process), torchrun (tools/dist_train.sh) or slurm (tools/slurm_train.sh). DRY_RUN=1 prints the command.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: [DATA_PATH=..] [IMAGENET_C=..] [IMAGENET_A=..] [IMAGENET_R=..] [IMAGENET_SKETCH=..] $0 RUN [ARGS...]" >&2; exit 2; }
RUN=$1
shift
CKPT=$RUN
[ -d "$RUN" ] && CKPT="$RUN/checkpoint.pth"
REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)

SETS=()
ARGS=(--resume "$CKPT")
if [ -n "${DATA_PATH:-}" ]; then SETS+=(imagenet); ARGS+=(--data-path "$DATA_PATH"); fi
if [ -n "${IMAGENET_C:-}" ]; then SETS+=(imagenet-c); ARGS+=(--imagenet-c-path "$IMAGENET_C"); fi
if [ -n "${IMAGENET_A:-}" ]; then SETS+=(imagenet-a); ARGS+=(--imagenet-a-path "$IMAGENET_A"); fi
if [ -n "${IMAGENET_R:-}" ]; then SETS+=(imagenet-r); ARGS+=(--imagenet-r-path "$IMAGENET_R"); fi
if [ -n "${IMAGENET_SKETCH:-}" ]; then SETS+=(imagenet-sketch); ARGS+=(--imagenet-sketch-path "$IMAGENET_SKETCH"); fi
[ ${#SETS[@]} -gt 0 ] || { echo "error: set at least one of DATA_PATH, IMAGENET_C, IMAGENET_A, IMAGENET_R, IMAGENET_SKETCH" >&2; exit 2; }
ARGS+=(--eval-sets "$(IFS=,; echo "${SETS[*]}")")

case "${LAUNCHER:-python}" in
    python) LAUNCH=("${PYTHON:-python}" -m) ;;
    torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
    slurm) LAUNCH=(env JOB_NAME=evaluate "$REPO_ROOT/tools/slurm_train.sh") ;;
    *) echo "error: LAUNCHER must be python, torchrun or slurm" >&2; exit 2 ;;
esac
CMD=("${LAUNCH[@]}" image_cls.evaluate "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/ $//'
    echo
    exit 0
fi
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${CMD[@]}"
