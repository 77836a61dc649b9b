#!/usr/bin/env bash
# Fine-tune one paper row: a preset of point_cloud/configs from Point-BERT.pth, launched with torchrun or SLURM.
#
#   SCANOBJECTNN_PATH=data/ScanObjectNN POINT_BERT=ckpt/Point-BERT.pth LLM_PATH=/ckpt/llama-7b GPUS=4 \
#       point_cloud/scripts/train.sh scanobjectnn_hardest_llama torchrun
#   MODELNET_PATH=data/ModelNet/modelnet40_normal_resampled POINT_BERT=... PARTITION=gpu GPUS=4 \
#       point_cloud/scripts/train.sh modelnet40_8k_baseline slurm
#   point_cloud/scripts/train.sh scanobjectnn_objectbg_baseline torchrun --epochs 10   # extra flags: train.py's
#
# Environment: SCANOBJECTNN_PATH (folder with main_split/ and main_split_nobg/; scanobjectnn_* presets),
# MODELNET_PATH (modelnet40_normal_resampled/; modelnet40_* presets), POINT_BERT (the ShapeNet-pretrained
# Point-BERT.pth every paper row fine-tunes from), LLM_PATH (LLaMA-7B: Meta dir, HF dir or .gguf; presets with an
# LLM block, mlp/random read only its config), RUNS (output root, default runs/point_cloud; the run goes to
# RUNS/PRESET, or RUNS/PRESET/seedN with SEED=N), DRY_RUN=1 (print the command only), plus the launcher's own
# variables (tools/dist_train.sh: GPUS, ...; tools/slurm_train.sh: GPUS, PARTITION, SRUN_ARGS, ...). The presets
# hold a total batch of 32 (the paper's 4 GPUs x 8), split over however many processes run.
set -euo pipefail

usage="usage: [SCANOBJECTNN_PATH=D|MODELNET_PATH=D] [POINT_BERT=P] [LLM_PATH=L] [RUNS=R] [SEED=N] [DRY_RUN=1]"
usage="$usage $0 PRESET torchrun|slurm [TRAIN ARGS...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
PRESET=$1
LAUNCHER=$2
shift 2

REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG="$REPO_ROOT/point_cloud/configs/$PRESET.yaml"
[ -f "$CONFIG" ] || { echo "error: no preset $CONFIG (see point_cloud/scripts/paper_rows.txt)" >&2; exit 2; }
case "$LAUNCHER" in
    torchrun) LAUNCH=("$REPO_ROOT/tools/dist_train.sh") ;;
    slurm) LAUNCH=(env JOB_NAME="$PRESET" "$REPO_ROOT/tools/slurm_train.sh") ;;
    *) echo "error: launcher must be torchrun or slurm, got '$LAUNCHER'" >&2; exit 2 ;;
esac

# A value from the environment, or (DRY_RUN only) its name as a placeholder; otherwise a clear error.
need() {
    local name=$1 why=$2
    if [ -n "${!name:-}" ]; then printf '%s' "${!name}"
    elif [ -n "${DRY_RUN:-}" ]; then printf '$%s' "$name"
    else echo "error: $PRESET needs $name=<$why>" >&2; return 2
    fi
}
case "$PRESET" in
    modelnet40_*) DATA=$(need MODELNET_PATH "modelnet40_normal_resampled folder") ;;
    *) DATA=$(need SCANOBJECTNN_PATH "ScanObjectNN folder with main_split/ and main_split_nobg/") ;;
esac
OUT="${RUNS:-runs/point_cloud}/$PRESET${SEED:+/seed$SEED}"
ARGS=(--config "$CONFIG" --data-path "$DATA" --ckpts "$(need POINT_BERT "ShapeNet-pretrained Point-BERT.pth")"
      --output-dir "$OUT")
[ -n "${SEED:-}" ] && ARGS+=(--seed "$SEED")
VARIANT=$(sed -n 's/^llm_variant: *\([a-z_]*\).*/\1/p' "$CONFIG")
[ "$VARIANT" != "none" ] && ARGS+=(--llm-path "$(need LLM_PATH "LLaMA-7B checkpoint")")

CMD=("${LAUNCH[@]}" point_cloud.train "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/\\\$\([A-Z_]*\)/$\1/g; s/ $//'
    echo
    exit 0
fi
exec "${CMD[@]}"
