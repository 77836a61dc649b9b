#!/usr/bin/env bash
# Evaluate a fine-tuning run, or a released fine-tuned checkpoint, with Point-BERT's test-time voting.
#
#   point_cloud/scripts/evaluate.sh runs/point_cloud/scanobjectnn_hardest_llama            # its best.pth
#   PRESET=modelnet40_1k_baseline MODELNET_PATH=... point_cloud/scripts/evaluate.sh ModelNet_1k.pth
#
# RUN is a run directory (its config.yaml rebuilds the model, its best.pth is evaluated) or, with PRESET set, a
# released fine-tuned checkpoint (Point-BERT zoo, LM4VE ckpt-best.pth; data from SCANOBJECTNN_PATH or
# MODELNET_PATH, LLM_PATH for presets with an LLM block). Prints and writes eval_vote.json (beside the run, or
# the checkpoint): test_acc, and test_acc_vote as upstream's test reports it (best of VOTE_REPEATS=9 runs of 10
# votes). Extra flags go to point_cloud.evaluate. LAUNCHER: python (default), torchrun or slurm; DRY_RUN=1 prints.
set -euo pipefail

usage="usage: [PRESET=P] [VOTE_REPEATS=N] [LAUNCHER=L] [DRY_RUN=1] $0 RUN|CHECKPOINT [ARGS...]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
RUN=$1
shift
REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ARGS=(--vote --vote-repeats "${VOTE_REPEATS:-9}")
if [ -d "$RUN" ]; then
    ARGS+=(--config "$RUN/config.yaml" --resume "$RUN/best.pth" --results "$RUN/eval_vote.json")
else
    if [ -z "${PRESET:-}" ]; then
        echo "error: evaluating a checkpoint file needs PRESET=<point_cloud/configs name>" >&2
        exit 2
    fi
    CONFIG="$REPO_ROOT/point_cloud/configs/$PRESET.yaml"
    [ -f "$CONFIG" ] || { echo "error: no preset $CONFIG" >&2; exit 2; }
    case "$PRESET" in
        modelnet40_*) DATA=${MODELNET_PATH:-\$MODELNET_PATH} ;;
        *) DATA=${SCANOBJECTNN_PATH:-\$SCANOBJECTNN_PATH} ;;
    esac
    ARGS+=(--config "$CONFIG" --data-path "$DATA" --ckpts "$RUN" --results "${RUN%.*}_eval_vote.json")
    grep -q '^llm_variant: none' "$CONFIG" || ARGS+=(--llm-path "${LLM_PATH:-\$LLM_PATH}")
fi

case "${LAUNCHER:-python}" in
    python) LAUNCH=("${PYTHON:-python}" -m) ;;
    torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
    slurm) LAUNCH=(env JOB_NAME=evaluate "$REPO_ROOT/tools/slurm_train.sh") ;;
    *) echo "error: LAUNCHER must be python, torchrun or slurm" >&2; exit 2 ;;
esac
CMD=("${LAUNCH[@]}" point_cloud.evaluate "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/\\\$\([A-Z_]*\)/$\1/g; s/ $//'
    echo
    exit 0
fi
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${CMD[@]}"
