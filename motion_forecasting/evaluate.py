"""Evaluate a trained run on a split (leaderboard metrics, K = 6 and K = 1) and optionally write a submission.

    python -m motion_forecasting.evaluate --resume runs/vectornet/best.pth --split-path av1/val
    python -m motion_forecasting.evaluate --resume runs/vectornet/best.pth --split-path av1/test_obs \\
        --submission out/av1_test.h5          # AV1: EvalAI .h5; AV2: the challenge .parquet

Prints one JSON line ``{"test_minFDE": ..., ...}`` (splits without a future: ``test_samples`` only).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pyarrow.parquet as pq

from common.engine import loop, runner
from common.engine.errors import ConfigError

from .data.dataset import SkipCounts
from .predict import add_run_args, predict, split_loader
from .submission import write_av1_h5, write_av2_parquet
from .task import TASK


def build_parser() -> argparse.ArgumentParser:
    parser = add_run_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--cache-dir", default=None, help="cache root for this split (default: none, read raw)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--submission", default=None, help="write the leaderboard file here (.h5 AV1, .parquet AV2)")
    parser.add_argument("--results", default=None, help="also write the metrics JSON here")
    return parser


def main(opts: argparse.Namespace) -> dict:
    run = runner.load_run(TASK, opts.resume, use_ema=opts.ema,
                          overrides={"llm_path": opts.llm_path, "map_dir": opts.map_dir})
    args = run.args
    args.cache_dir, args.num_workers, args.pin_mem = opts.cache_dir, opts.num_workers, False
    if opts.batch_size:
        args.batch_size = opts.batch_size
    dataset, loader = split_loader(args, opts.split_path, SkipCounts())
    metrics = TASK.evaluate(run.model, loader, args)
    if opts.submission:
        write_submission(opts.submission, args.dataset, predict(run.model, dataset, loader))
    return loop.report_results(metrics, opts.results, True)


def write_submission(path: str, dataset: str, predictions) -> None:
    if dataset == "av1":
        trajs, probs = {}, {}
        for p in predictions:
            if not p.scene_id.isdigit():
                raise ConfigError(f"AV1 sequence ids are integers (CSV stems), got {p.scene_id!r}")
            trajs[int(p.scene_id)], probs[int(p.scene_id)] = p.world, p.probs
        write_av1_h5(path, trajs, probs)
    else:
        out = {}
        for p in predictions:
            focal = pq.read_table(p.file, columns=["focal_track_id"]).column(0)[0].as_py()
            out[p.scene_id] = (p.probs / p.probs.sum(), {focal: p.world})
        write_av2_parquet(path, out)


def run(argv: Sequence[str] | None = None) -> None:
    loop.run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    run()
