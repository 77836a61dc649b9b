#!/usr/bin/env bash
# Launch a task's entry module under SLURM: one task per GPU, srun starts them, common.engine reads SLURM_*.
#
#   PARTITION=gpu GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh MODULE [TRAIN ARGS...]
#   PARTITION=gpu GPUS=8 tools/slurm_train.sh image_cls.train --config image_cls/configs/vit_small_llama.yaml \
#       --output-dir runs/vit_small_llama
#
# Environment: GPUS (total tasks, 8), GPUS_PER_NODE (min(GPUS, 8)), CPUS_PER_TASK (5), PARTITION (cluster
# default when unset), JOB_NAME (MODULE), SRUN_ARGS (extra srun flags, e.g. "--time=48:00:00 --account=x"),
# PYTHON (python).
#
# Requeue-friendly: unless the arguments already contain --resume, "--resume auto" is appended, so a requeued
# or re-submitted job (same --output-dir) continues from OUTPUT_DIR/checkpoint.pth. Use it inside an sbatch
# script with "#SBATCH --requeue" to survive preemption; --kill-on-bad-exit=1 ends all tasks when one fails.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: PARTITION=P GPUS=N [GPUS_PER_NODE=M] [CPUS_PER_TASK=C] [SRUN_ARGS=...] $0 MODULE [ARGS...]" >&2
    echo "  e.g. PARTITION=gpu GPUS=8 $0 image_cls.train --config image_cls/configs/vit_small_llama.yaml" \
         "--output-dir runs/vit_small_llama" >&2
    exit 2
fi
MODULE=$1
shift

GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
JOB_NAME=${JOB_NAME:-$MODULE}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}

RESUME=(--resume auto)
for arg in "$@"; do
    case "$arg" in --resume|--resume=*) RESUME=() ;; esac
done
PARTITION_ARGS=()
[ -n "${PARTITION:-}" ] && PARTITION_ARGS=(--partition="$PARTITION")

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"   # entry points are modules of the repository root
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# shellcheck disable=SC2086  # SRUN_ARGS is a list of flags on purpose
exec srun "${PARTITION_ARGS[@]}" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u -m "$MODULE" "$@" "${RESUME[@]}"
