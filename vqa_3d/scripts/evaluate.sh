#!/usr/bin/env bash
# Evaluate an SQA3D run (its best.pth) or a released upstream model.pth on the test split: EM@1, EM@10, Table E.
#
#   SQA3D_PATH=... SCANNET_DATA=... GLOVE=... vqa_3d/scripts/evaluate.sh runs/vqa_3d/sqa3d_paper_llama
#   PRESET=sqa3d_upstream ANSWER_VOCAB=data/qa/answer_counter.json SQA3D_PATH=... SCANNET_DATA=... GLOVE=... \
#       vqa_3d/scripts/evaluate.sh auxi/model.pth
#
# Writes eval_test.json beside the run (or the checkpoint). SPLIT (default test), LAUNCHER python (default) |
# torchrun | slurm, DRY_RUN=1 prints the command. Extra flags go to vqa_3d.evaluate.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/../.. source=tools/preset_lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/tools/preset_lib.sh"

USAGE_ENV="SQA3D_PATH=D SCANNET_DATA=D GLOVE=F [ANSWER_VOCAB=F] [SPLIT=test]"
checkpoint_args() {   # CHECKPOINT RESULTS_FILE: an upstream model.pth
    need_arg --answer-vocab ANSWER_VOCAB "upstream answer_counter.json"
    ARGS+=(--released "$1" --results "$2")
}
[ $# -ge 1 ] || usage_error "[PRESET=P] [LAUNCHER=L] [DRY_RUN=1] $0 RUN|CHECKPOINT [ARGS...]"
ARGS=(--split "${SPLIT:-test}")
need_arg --sqa-path SQA3D_PATH "SQA3D balanced/ folder"
need_arg --scannet-data SCANNET_DATA "ScanQA scannet_data/ folder"
need_arg --glove GLOVE "GloVe file"
if [ -d "$1" ]; then   # a run directory: its best.pth (the run's saved config rebuilds the model)
    run=$1
    shift
    ARGS+=(--checkpoint "$run/best.pth" --results "$run/eval_${SPLIT:-test}.json")
    choose_launcher "${LAUNCHER:-python}" evaluate python torchrun slurm
    run_command vqa_3d.evaluate "$@"
fi
evaluate_main vqa_3d "eval_${SPLIT:-test}.json" "$@"
