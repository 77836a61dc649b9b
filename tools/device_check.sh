#!/usr/bin/env bash
# The GPU measurements still owed to tools/BENCHMARKS.md, prepared to run as they are on a lent GPU machine (its
# python has torch, torchvision, timm, transformers, safetensors, h5py; nothing else is needed: the `gpu` input
# pipeline falls back to torchvision's nvJPEG decoder, DALI is left out because its wheel is too large to carry).
#
#   tools/device_check.sh speed   # est. 5-8 min on an H200: block benchmark, eager + compiled + FP8 (speed issue)
#   tools/device_check.sh input   # est. 3-5 min: cpu vs gpu input pipeline, alone and feeding the model (input issue)
#   tools/device_check.sh all     # both (likely over a 10-minute call: run the parts as separate calls)
#
# Results (JSON, logs, nvidia-smi) go to $OUT (the device tool's folder) or runs/device/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/device}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
part="${1:-all}"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.csv" 2>&1
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'timm', timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$out/versions.txt"

if [[ "$part" == speed || "$part" == all ]]; then
    python3 -m tools.bench step --device cuda \
        --configs vit,vit_compile,reference,ours_fp32w,ours,ours_ckpt,ours_compile,ours_fp8,ours_fp8_compile \
        --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.log" || status=1
    python3 -m tools.bench fp8 --device cuda --json "$out/fp8_cuda.json" 2>&1 | tee "$out/fp8_cuda.log" || status=1
fi
if [[ "$part" == input || "$part" == all ]]; then
    workers=$(( $(nproc) < 16 ? $(nproc) : 16 ))
    python3 -m tools.bench input --synthetic 4096 --workers "$workers" --batches 30 --pipelines cpu,gpu \
        --json "$out/input_cuda.json" 2>&1 | tee "$out/input_cuda.log" || status=1
fi
exit "$status"
