#!/usr/bin/env bash
# Evaluate a fine-tuning run, or a released fine-tuned checkpoint, with the 2 clips x 3 crops test.
#
#   action_recognition/scripts/evaluate.sh runs/action_recognition/ssv2_vit_s_llama           # its best.pth
#   PRESET=ssv2_vit_s_baseline SSV2_LISTS=... action_recognition/scripts/evaluate.sh videomae_vits_ssv2_ft.pth
#
# RUN is a run directory (its config.yaml rebuilds the model, its best.pth is evaluated) or, with PRESET set, a
# released fine-tuned checkpoint (VideoMAE's SSv2 zoo, LM4VE's; data from SSV2_LISTS / SSV2_VIDEOS, LLM_PATH for
# presets with an LLM block). Prints and writes eval.json (beside the run, or the checkpoint): test_acc1,
# test_acc5. Extra flags go to action_recognition.evaluate. LAUNCHER: python (default), torchrun or slurm;
# DRY_RUN=1 prints the command.
set -euo pipefail

usage="usage: [PRESET=P] [LAUNCHER=L] [DRY_RUN=1] $0 RUN|CHECKPOINT [ARGS...]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
RUN=$1
shift
REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ -d "$RUN" ]; then
    ARGS=(--config "$RUN/config.yaml" --resume "$RUN/best.pth" --results "$RUN/eval.json")
else
    if [ -z "${PRESET:-}" ]; then
        echo "error: evaluating a checkpoint file needs PRESET=<action_recognition/configs name>" >&2
        exit 2
    fi
    CONFIG="$REPO_ROOT/action_recognition/configs/$PRESET.yaml"
    [ -f "$CONFIG" ] || { echo "error: no preset $CONFIG" >&2; exit 2; }
    ARGS=(--config "$CONFIG" --data-path "${SSV2_LISTS:-\$SSV2_LISTS}" --finetune "$RUN"
          --results "${RUN%.*}_eval.json")
    [ -n "${SSV2_VIDEOS:-}" ] && ARGS+=(--data-root "$SSV2_VIDEOS")
    grep -q '^llm_variant: none' "$CONFIG" || ARGS+=(--llm-path "${LLM_PATH:-\$LLM_PATH}")
fi

case "${LAUNCHER:-python}" in
    python) LAUNCH=("${PYTHON:-python}" -m) ;;
    torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
    slurm) LAUNCH=(env JOB_NAME=evaluate "$REPO_ROOT/tools/slurm_train.sh") ;;
    *) echo "error: LAUNCHER must be python, torchrun or slurm" >&2; exit 2 ;;
esac
CMD=("${LAUNCH[@]}" action_recognition.evaluate "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/\\\$\([A-Z_0-9]*\)/$\1/g; s/ $//'
    echo
    exit 0
fi
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${CMD[@]}"
