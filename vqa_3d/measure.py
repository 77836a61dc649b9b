"""Time the point-set geometry at SQA3D's sizes (40k points) and one full-size model forward.

    python -m vqa_3d.measure [--device cpu|cuda] [--batch 1] [--threads 2] [--repeats 3]

Prints one JSON line of median seconds: FPS 2048 of 40k (kernel tie rule and lowest-index), ball query of SA1
(2048 x 64 within 0.2 m), the whole SA1..SA4 + proposal geometry, and a full-size ScanQA forward (no grad).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from common.pointsets import ball_query, farthest_point_sample, gather_points

from .model import ScanQA, SQAConfig


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return round(statistics.median(out), 4)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-model", action="store_true", help="geometry only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    xyz = (torch.rand(args.batch, 40000, 3, generator=g) * torch.tensor([6.0, 6.0, 2.5])).to(device)
    centres = gather_points(xyz, farthest_point_sample(xyz, 2048))
    result = {
        "device": str(device), "batch": args.batch, "threads": torch.get_num_threads(),
        "fps_2048_of_40k": _time(lambda: farthest_point_sample(xyz, 2048), device, args.repeats),
        "fps_2048_of_40k_index_ties": _time(lambda: farthest_point_sample(xyz, 2048, tie_break="index"), device,
                                            args.repeats),
        "ball_query_sa1": _time(lambda: ball_query(centres, xyz, 0.2, 64), device, args.repeats),
    }
    if not args.no_model:
        model = ScanQA(SQAConfig(num_answers=706)).to(device).eval()
        batch = {"point_clouds": torch.cat([xyz, torch.rand(args.batch, 40000, 4, device=device) - 0.5], -1),
                 "s_feat": torch.randn(args.batch, 20, 300, device=device),
                 "q_feat": torch.randn(args.batch, 12, 300, device=device),
                 "s_len": torch.full((args.batch,), 20), "q_len": torch.full((args.batch,), 12)}
        with torch.no_grad():
            result["scanqa_forward_40k"] = _time(lambda: model(batch), device, args.repeats)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
