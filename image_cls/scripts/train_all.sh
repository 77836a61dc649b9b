#!/usr/bin/env bash
# Train every paper row of paper_rows.txt (or those whose preset matches FILTER, a grep pattern).
#
#   DATA_PATH=/data/imagenet LLM_PATH=/ckpt/llama-7b GPUS=4 image_cls/scripts/train_all.sh torchrun
#   DATA_PATH=... LLM_PATH=... PARTITION=gpu GPUS=4 FILTER=100ep image_cls/scripts/train_all.sh slurm
#   DRY_RUN=1 image_cls/scripts/train_all.sh slurm          # print every command line
#
# torchrun: one run after the other on this node. slurm: all runs started at once (one srun each), then waited
# for. Each run resumes from RUNS/PRESET/checkpoint.pth when re-launched with --resume auto (slurm_train.sh adds it).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: [FILTER=PATTERN] [DRY_RUN=1] $0 torchrun|slurm [TRAIN ARGS...]" >&2; exit 2; }
LAUNCHER=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
mapfile -t PRESETS < <(grep -v '^#' "$HERE/paper_rows.txt" | awk 'NF {print $1}' | grep -e "${FILTER:-.}")
[ ${#PRESETS[@]} -gt 0 ] || { echo "error: no preset of paper_rows.txt matches '${FILTER:-}'" >&2; exit 2; }

pids=()
for preset in "${PRESETS[@]}"; do
    if [ "$LAUNCHER" = slurm ] && [ -z "${DRY_RUN:-}" ]; then
        "$HERE/train.sh" "$preset" slurm "$@" &
        pids+=($!)
    else
        "$HERE/train.sh" "$preset" "$LAUNCHER" "$@"
    fi
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
