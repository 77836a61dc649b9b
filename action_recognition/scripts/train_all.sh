#!/usr/bin/env bash
# Fine-tune every paper row of paper_rows.txt (or those whose preset matches FILTER, a grep pattern).
#
#   SSV2_LISTS=... SSV2_VIDEOS=... VIDEOMAE_VITS=... VIDEOMAE_VITB=... LLM_PATH=... GPUS=4 \
#       action_recognition/scripts/train_all.sh torchrun
#   ... PARTITION=gpu GPUS=4 FILTER=vit_s action_recognition/scripts/train_all.sh slurm
#   DRY_RUN=1 action_recognition/scripts/train_all.sh slurm          # print every command line
#
# torchrun: one run after the other on this node. slurm: all runs started at once (one srun each), then waited
# for; a re-launch continues each run from RUNS/PRESET/checkpoint.pth (slurm_train.sh adds --resume auto).
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
