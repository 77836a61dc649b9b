"""Input-pipeline throughput: timm CPU transforms vs the DALI pipeline (``python -m tools.bench input``).

Reads ``DATA_PATH/train/<wnid>/*`` with DeiT's training recipe both ways and reports img/s over ``--batches``
batches after one warm-up batch (start-up excluded): ``cpu`` = DataLoader with ``--workers`` processes and timm's
transform (image_cls/data/transforms.py); ``dali`` = image_cls/data/dali.py with ``--workers`` threads, on the GPU
(mixed decode) when CUDA is available, else on DALI's CPU backend. Random erasing is included in both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from image_cls.data.build import build_task_data
from image_cls.options import build_parser


def _time(loader, batches: int, device: torch.device) -> float:
    iterator = iter(loader)
    next(iterator)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        images = images.to(device, non_blocking=True)
        n += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Time both pipelines; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", required=True, help="folder with train/<wnid>/ and val/<wnid>/")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers / DALI threads")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per pipeline")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=224)
    opts = parser.parse_args(argv)
    args = build_parser().parse_args(["--data-path", opts.data_path, "--batch-size", str(opts.batch_size),
                                      "--input-size", str(opts.input_size), "--num-workers", str(opts.workers),
                                      "--no-repeated-aug"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = build_task_data(args)
    if len(data.train) < opts.batch_size * (opts.batches + 1):
        parser.error(f"{opts.data_path}: {len(data.train)} training images, need batch size x (batches + 1)")
    cpu_loader = torch.utils.data.DataLoader(data.train, batch_size=opts.batch_size, shuffle=True,
                                             num_workers=opts.workers, drop_last=True,
                                             pin_memory=device.type == "cuda")
    result = {"device": device.type, "workers": opts.workers, "batch_size": opts.batch_size,
              "cpu_img_s": round(_time(cpu_loader, opts.batches, device), 1)}
    from image_cls.data import dali

    try:
        dali.import_dali()
    except dali.DaliUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dali_loader, _ = dali.build_dali_loaders(data.train, data.val, args, device=device)
    result["dali_img_s"] = round(_time(dali_loader, opts.batches, device), 1)
    result["dali_over_cpu"] = round(result["dali_img_s"] / result["cpu_img_s"], 2)
    print(json.dumps(result))
    return 0
