"""Evaluate a fine-tuned Point-BERT (± LLM) on the test split: overall accuracy, optionally with voting.

    # a run of point_cloud.train (the config saved in the checkpoint rebuilds the model; flags given here win)
    python -m point_cloud.evaluate --resume runs/x/best.pth --vote [--data-path ... --llm-path ...]
    python -m point_cloud.evaluate --config runs/x/config.yaml --resume runs/x/best.pth --vote
    # a released fine-tuned checkpoint (Point-BERT's ModelNet/ScanObjectNN zoo, LM4VE ckpt-best.pth)
    python -m point_cloud.evaluate --config point_cloud/configs/scanobjectnn_hardest_baseline.yaml \\
        --data-path data/ScanObjectNN --ckpts ScanObjectNN_hardest.pth --vote --vote-repeats 9

Prints one JSON line ``{"test_acc": ..., "test_samples": ..., "test_acc_vote": ...}`` (``--results FILE`` also
writes it). Voting is Point-BERT's ``test_vote``: 10 random pooled subsets with scale/translate, logits averaged;
its ``test`` reports the best of 9 such runs (``--vote-repeats 9``), ``acc_vote_mean`` is their mean.
"""

from __future__ import annotations

import argparse
import logging

from common.engine import checkpoint, loop, runner
from common.engine.errors import ConfigError
from point_cloud.checkpoints import is_pretrained_state, load_finetuned, read_state_dict
from point_cloud.train import build_parser as build_train_parser
from point_cloud.train import build_split, check_args, create_model, make_evaluate_fn

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The training parser (same config keys, so a run's config.yaml is a valid --config) plus ``--results``."""
    parser = build_train_parser(__doc__.splitlines()[0])
    parser.add_argument("--results", default=None, metavar="JSON", help="also write the metrics to this file")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    """Load the weights (``--resume`` engine checkpoint, else ``--ckpts``) and evaluate; returns the metrics."""
    if args.resume and args.config is None:  # the run's own config, from its checkpoint
        from point_cloud.task import TASK

        args = runner.evaluation_args(TASK, args, build_parser())
    fps_pool = check_args(args)
    info = runner.setup_evaluation(args)
    resume = checkpoint.resolve_resume(args.resume, args.output_dir)
    if resume is None and not args.ckpts:
        raise ConfigError("nothing to evaluate: pass --resume RUN/best.pth (a point_cloud.train checkpoint) or "
                          "--ckpts FINETUNED.pth (a released fine-tuned checkpoint)")
    test_set = build_split(args, "test")
    model = create_model(args)
    if resume is not None:
        checkpoint.restore(resume, model=model, rank=info.rank, restore_rng=False)
        log.info("evaluating %s", resume)
    else:
        state = read_state_dict(args.ckpts)
        if is_pretrained_state(state):
            raise ConfigError(f"--ckpts {args.ckpts} is the pretrained Point-BERT (no classification head); "
                              "evaluate a fine-tuned checkpoint or a run's --resume RUN/best.pth")
        load_finetuned(model, args.ckpts, state, args.lm4ve_policy)
    model.to(info.device)
    loader = loop.make_loader(test_set, args, train=False)
    metrics = loop.evaluate(make_evaluate_fn(args, fps_pool, count=True), model, loader, info.device, args.amp)
    return loop.report_results(metrics, args.results, info.is_main)


if __name__ == "__main__":
    loop.run_cli(main, build_parser())
