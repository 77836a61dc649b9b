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
# one process), torchrun (tools/dist_train.sh) or slurm (tools/slurm_train.sh). DRY_RUN=1 prints the command
# (tools/preset_lib.sh).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[DATA_PATH=..] [IMAGENET_C=..] [IMAGENET_A=..] [IMAGENET_R=..] [IMAGENET_SKETCH=..]"
[ $# -ge 1 ] || usage_error "[LAUNCHER=L] [DRY_RUN=1] $0 RUN [ARGS...]"
RUN=$1
shift
CKPT=$RUN
[ -d "$RUN" ] && CKPT="$RUN/checkpoint.pth"
ARGS=(--resume "$CKPT")
SETS=()
add_set() {   # add_set NAME ENV_VAR FLAG: evaluate set NAME when ENV_VAR holds its path
    if [ -n "${!2:-}" ]; then SETS+=("$1"); opt_arg "$3" "$2"; fi
}
add_set imagenet DATA_PATH --data-path
add_set imagenet-c IMAGENET_C --imagenet-c-path
add_set imagenet-a IMAGENET_A --imagenet-a-path
add_set imagenet-r IMAGENET_R --imagenet-r-path
add_set imagenet-sketch IMAGENET_SKETCH --imagenet-sketch-path
[ ${#SETS[@]} -gt 0 ] || die "set at least one of DATA_PATH, IMAGENET_C, IMAGENET_A, IMAGENET_R, IMAGENET_SKETCH"
ARGS+=(--eval-sets "$(IFS=,; echo "${SETS[*]}")")

choose_launcher "${LAUNCHER:-python}" evaluate python torchrun slurm
run_command image_cls.evaluate "$@"
