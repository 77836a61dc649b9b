#!/usr/bin/env bash
# Fine-tune one paper row: a preset of action_recognition/configs from VideoMAE's SSv2-pretrained checkpoint,
# launched with torchrun or SLURM.
#
#   SSV2_LISTS=/data/ssv2/lists SSV2_VIDEOS=/data/ssv2/videos VIDEOMAE_VITS=ckpt/videomae_ssv2_vits.pth \
#       LLM_PATH=/ckpt/llama-7b GPUS=4 action_recognition/scripts/train.sh ssv2_vit_s_llama torchrun
#   ... VIDEOMAE_VITB=ckpt/videomae_ssv2_vitb.pth PARTITION=gpu GPUS=4 \
#       action_recognition/scripts/train.sh ssv2_vit_b_baseline slurm
#   action_recognition/scripts/train.sh ssv2_vit_s_baseline torchrun --epochs 1   # extra flags: train.py's
#
# Environment: SSV2_LISTS (folder with train.csv / val.csv, e.g. from python -m action_recognition.prepare),
# SSV2_VIDEOS (folder the CSVs' relative paths are resolved against; omit when they are absolute),
# VIDEOMAE_VITS / VIDEOMAE_VITB (VideoMAE's SSv2-pretrained videomae_ssv2_vit{s,b}.pth for ssv2_vit_s_* /
# ssv2_vit_b_*), LLM_PATH (LLaMA-7B: Meta dir, HF dir or .gguf; presets with an LLM block, mlp/random read only
# its config), RUNS (output root, default runs/action_recognition; the run goes to RUNS/PRESET, or
# RUNS/PRESET/seedN with SEED=N), DRY_RUN=1 (print the command only), plus the launcher's own variables
# (tools/dist_train.sh: GPUS, ...; tools/slurm_train.sh: GPUS, PARTITION, SRUN_ARGS, ...). The presets hold the
# total batch (total_batch_size), split over however many processes run.
set -euo pipefail

usage="usage: [SSV2_LISTS=D] [SSV2_VIDEOS=D] [VIDEOMAE_VITS=P|VIDEOMAE_VITB=P] [LLM_PATH=L] [RUNS=R] [SEED=N]"
usage="$usage [DRY_RUN=1] $0 PRESET torchrun|slurm [TRAIN ARGS...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
PRESET=$1
LAUNCHER=$2
shift 2

REPO_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG="$REPO_ROOT/action_recognition/configs/$PRESET.yaml"
[ -f "$CONFIG" ] || { echo "error: no preset $CONFIG (see action_recognition/scripts/paper_rows.txt)" >&2; exit 2; }
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
    ssv2_vit_s_*) CKPT=$(need VIDEOMAE_VITS "VideoMAE's SSv2-pretrained videomae_ssv2_vits.pth") ;;
    *) CKPT=$(need VIDEOMAE_VITB "VideoMAE's SSv2-pretrained videomae_ssv2_vitb.pth") ;;
esac
OUT="${RUNS:-runs/action_recognition}/$PRESET${SEED:+/seed$SEED}"
ARGS=(--config "$CONFIG" --data-path "$(need SSV2_LISTS "folder with train.csv and val.csv")" --finetune "$CKPT"
      --output-dir "$OUT")
[ -n "${SSV2_VIDEOS:-}" ] && ARGS+=(--data-root "$SSV2_VIDEOS")
[ -n "${SEED:-}" ] && ARGS+=(--seed "$SEED")
VARIANT=$(sed -n 's/^llm_variant: *\([a-z_]*\).*/\1/p' "$CONFIG")
[ "$VARIANT" != "none" ] && ARGS+=(--llm-path "$(need LLM_PATH "LLaMA-7B checkpoint")")

CMD=("${LAUNCH[@]}" action_recognition.train "${ARGS[@]}" "$@")
if [ -n "${DRY_RUN:-}" ]; then
    printf '%q ' "${CMD[@]}" | sed 's/\\\$\([A-Z_0-9]*\)/$\1/g; s/ $//'
    echo
    exit 0
fi
exec "${CMD[@]}"
