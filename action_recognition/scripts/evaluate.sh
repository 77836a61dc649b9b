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
# DRY_RUN=1 prints the command (unset inputs as $NAME placeholders; a real run stops with an error naming them).
# See tools/preset_lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="[SSV2_LISTS=D] [SSV2_VIDEOS=D] [LLM_PATH=L]"
checkpoint_args() {   # CHECKPOINT RESULTS_FILE: a released fine-tuned checkpoint
    need_arg --data-path SSV2_LISTS "folder with train.csv and val.csv"
    ARGS+=(--finetune "$1" --results "$2")
    opt_arg --data-root SSV2_VIDEOS
}
evaluate_main action_recognition eval.json "$@"
