#!/usr/bin/env bash
# Train every paper row of TASK/scripts/paper_rows.txt (or those whose preset matches FILTER, a grep pattern),
# each through TASK/scripts/train.sh (so with that task's environment: data, checkpoints, LLM_PATH, RUNS, SEED).
#
#   DATA_PATH=/data/imagenet LLM_PATH=/ckpt/llama-7b GPUS=4 tools/train_paper_rows.sh image_cls torchrun
#   SCANOBJECTNN_PATH=... POINT_BERT=... LLM_PATH=... PARTITION=gpu GPUS=4 FILTER=scanobjectnn \
#       tools/train_paper_rows.sh point_cloud slurm
#   DRY_RUN=1 tools/train_paper_rows.sh action_recognition slurm --epochs 1   # print every command line
#
# torchrun: one run after the other on this node. slurm: all runs started at once (one srun each), then waited
# for; the exit status is 1 when any failed. A re-launch continues each run from RUNS/PRESET/checkpoint.pth
# (slurm_train.sh adds --resume auto). Extra arguments go to every run.
set -euo pipefail

usage="usage: [FILTER=PATTERN] [DRY_RUN=1] $0 TASK torchrun|slurm [TRAIN ARGS...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
TASK=$1
LAUNCHER=$2
shift 2
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPTS="$REPO_ROOT/$TASK/scripts"
[ -f "$SCRIPTS/paper_rows.txt" ] || { echo "error: no $SCRIPTS/paper_rows.txt (TASK is a task folder)" >&2; exit 2; }
case "$LAUNCHER" in
    torchrun|slurm) ;;
    *) echo "error: launcher must be torchrun or slurm, got '$LAUNCHER'" >&2; exit 2 ;;
esac

mapfile -t PRESETS < <(grep -v '^#' "$SCRIPTS/paper_rows.txt" | awk 'NF {print $1}' | grep -e "${FILTER:-.}" || true)
if [ ${#PRESETS[@]} -eq 0 ]; then
    echo "error: no preset of $TASK/scripts/paper_rows.txt matches '${FILTER:-}'" >&2
    exit 2
fi

pids=()
for preset in "${PRESETS[@]}"; do
    if [ "$LAUNCHER" = slurm ] && [ -z "${DRY_RUN:-}" ]; then
        "$SCRIPTS/train.sh" "$preset" slurm "$@" &
        pids+=($!)
    else
        "$SCRIPTS/train.sh" "$preset" "$LAUNCHER" "$@"
    fi
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
