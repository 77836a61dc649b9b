#!/usr/bin/env bash
# Launch a task's entry module with torchrun, on one node or several.
#
#   tools/dist_train.sh MODULE [TRAIN ARGS...]
#   GPUS=8 tools/dist_train.sh image_cls.train --config image_cls/configs/vit_small_llama.yaml --output-dir runs/x
#   # two nodes: run on each, NODE_RANK=0 on the master
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node01 GPUS=8 tools/dist_train.sh image_cls.train ...
#
# Environment: GPUS (processes on this node; default: visible GPUs, else 1), NNODES (1), NODE_RANK (0),
# MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), PYTHON (python). On CPU-only machines the processes use gloo.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: [GPUS=N] [NNODES=N NODE_RANK=I MASTER_ADDR=HOST] $0 MODULE [ARGS...]" >&2
    echo "  e.g. GPUS=8 $0 image_cls.train --config image_cls/configs/vit_small_llama.yaml --output-dir runs/x" >&2
    exit 2
fi
MODULE=$1
shift

if [ -z "${GPUS:-}" ]; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "${GPUS:-0}" -ge 1 ] || GPUS=1
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
PYTHON=${PYTHON:-python}

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"   # entry points are modules of the repository root
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ "$NNODES" -eq 1 ]; then
    RDZV=(--standalone)   # a free local port, no stale-port clashes between runs
else
    RDZV=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
fi

exec "$PYTHON" -m torch.distributed.run "${RDZV[@]}" --nproc_per_node "$GPUS" -m "$MODULE" "$@"
