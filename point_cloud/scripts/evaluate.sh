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
# votes). Extra flags go to point_cloud.evaluate. LAUNCHER: python (default), torchrun or slurm; DRY_RUN=1 prints
# (unset inputs as $NAME placeholders; a real run stops with an error naming them). See tools/preset_lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[VOTE_REPEATS=N]"
checkpoint_args() {   # CHECKPOINT RESULTS_FILE: a released fine-tuned checkpoint
    case "$PRESET" in
        modelnet40_*) need_arg --data-path MODELNET_PATH "modelnet40_normal_resampled folder" ;;
        *) need_arg --data-path SCANOBJECTNN_PATH "ScanObjectNN folder with main_split/ and main_split_nobg/" ;;
    esac
    ARGS+=(--ckpts "$1" --results "$2")
}
ARGS=(--vote --vote-repeats "${VOTE_REPEATS:-9}")
evaluate_main point_cloud eval_vote.json "$@"
