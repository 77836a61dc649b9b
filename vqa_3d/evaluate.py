"""Evaluate SQA3D on a split: EM@1, EM@10 and EM@1 per question type (Table E) with the per-type counts.

    # a run of vqa_3d.train (its saved config rebuilds the model and names the answer vocabulary)
    python -m vqa_3d.evaluate --checkpoint runs/sqa3d/best.pth --split test --sqa-path data/sqa_task/balanced \\
        --scannet-data data/scannet/scannet_data --glove data/glove.p
    # a released upstream model.pth (ScanQA + aux. task; strict load after the named map of checkpoints.py)
    python -m vqa_3d.evaluate --released auxi/model.pth --config vqa_3d/configs/sqa3d_upstream.yaml \\
        --answer-vocab data/qa/answer_counter.json --sqa-path ... --scannet-data ... --glove data/glove.p

Prints the table, then one JSON line ``{"test_em1": ..., "test_em10": ..., "test_em1_what": ..., "test_n_what":
...}`` (``--results FILE`` also writes it). Data paths given here replace the run's saved ones.
"""

from __future__ import annotations

import argparse
import logging

from common.engine import loop
from common.engine.errors import ConfigError
from common.engine.runner import load_run, setup_evaluation

from .checkpoints import load_released
from .data import collate
from .metrics import format_table
from .sqa import read_split
from .task import TASK

log = logging.getLogger(__name__)
OVERRIDES = ("sqa_path", "scannet_data", "scannet_scans", "glove", "answer_vocab", "llm_path")


def build_parser() -> argparse.ArgumentParser:
    parser = TASK.build_parser(__doc__.splitlines()[0])
    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--checkpoint", default=None, help="a vqa_3d.train checkpoint (best.pth / checkpoint.pth)")
    ev.add_argument("--released", default=None, help="an upstream SQA3D model.pth (needs --config and the data)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--ema", action="store_true", help="evaluate the run's EMA weights")
    ev.add_argument("--results", default=None, metavar="JSON", help="also write the metrics to this file")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    if bool(args.checkpoint) == bool(args.released):
        raise ConfigError("pass exactly one of --checkpoint RUN/best.pth or --released model.pth")
    info = setup_evaluation(args)
    if args.checkpoint:
        given = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
        run = load_run(TASK, args.checkpoint, use_ema=args.ema, overrides=given)
        model, run_args = run.model, run.args
        run_args.device, run_args.num_workers, run_args.batch_size = args.device, args.num_workers, args.batch_size
    else:
        run_args = args
        TASK.check_args(run_args)
    for flag in ("sqa_path", "scannet_data", "glove"):
        if not getattr(run_args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} is required")
    records = read_split(run_args.sqa_path, args.split)
    vocab, glove = TASK.vocab_and_glove(run_args, None, records)
    if args.released:
        model = loop.create_model(TASK.build_model, run_args)
        dropped = load_released(model, args.released)
        log.info("loaded %s; dropped %d never-used tensors: %s", args.released, len(dropped), dropped)
    if model.cfg.num_answers != len(vocab):
        raise ConfigError(f"the answer vocabulary {run_args.answer_vocab} has {len(vocab)} answers, the model "
                          f"{model.cfg.num_answers}")
    model.to(info.device).eval()
    dataset = TASK.dataset(run_args, records, vocab, glove, train=False)
    if dataset.skipped:
        log.warning("skipped questions: %s", dict(dataset.skipped))
    loader = loop.make_loader(dataset, run_args, train=False, collate_fn=collate)
    metrics = loop.evaluate(lambda m, ld: TASK.evaluate(m, ld, run_args), model, loader, info.device, run_args.amp)
    if info.is_main:
        print(format_table(metrics), flush=True)
    return loop.report_results(metrics, args.results, info.is_main)


if __name__ == "__main__":
    loop.run_cli(main, build_parser())
