"""Evaluate a fine-tuned VideoMAE (± LLM) on SSv2's validation set with the multi-view test protocol.

    # a run of action_recognition.train (the config saved in the checkpoint rebuilds the model; flags given here win)
    python -m action_recognition.evaluate --resume runs/x/best.pth [--data-path ... --llm-path ...]
    python -m action_recognition.evaluate --config runs/x/config.yaml --resume runs/x/best.pth
    # a released fine-tuned checkpoint (VideoMAE's SSv2 zoo; LM4VE's need the LLaMA-7B and llm_layers 15)
    python -m action_recognition.evaluate --config action_recognition/configs/ssv2_vit_s_baseline.yaml \\
        --data-path /data/ssv2/lists --finetune videomae_ssv2_vits_finetuned.pth
    tools/dist_train.sh action_recognition.evaluate --config ...     # several processes: each takes a shard

Prints one JSON line ``{"test_acc1", "test_acc5", "test_loss", "test_videos", "test_skipped_videos"}``
(``--results FILE`` also writes it): ``test_num_segment x test_num_crop`` views per video (2 x 3 in every preset),
softmax averaged per video, top-1 / top-5 over the videos, merged across ranks.
"""

from __future__ import annotations

import argparse
import logging

from action_recognition.checkpoints import load_finetuned, read_state_dict
from action_recognition.data import build_test_dataset
from action_recognition.options import build_parser as build_train_parser
from action_recognition.options import check_args
from action_recognition.train import create_model, eval_loader, make_evaluate_fn
from common.engine import checkpoint, loop, runner
from common.engine.errors import ConfigError

log = logging.getLogger("action_recognition.evaluate")


def build_parser() -> argparse.ArgumentParser:
    """The training parser (same config keys, so a run's config.yaml is a valid --config) plus ``--results``."""
    parser = build_train_parser(__doc__.splitlines()[0])
    parser.add_argument("--results", default=None, metavar="JSON", help="also write the metrics to this file")
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    """Load the weights (``--resume`` engine checkpoint, else ``--finetune``) and evaluate; returns the metrics."""
    if args.resume and args.config is None:  # the run's own config, from its checkpoint
        from action_recognition.task import TASK

        args = runner.evaluation_args(TASK, args, build_parser())
    check_args(args)
    info = runner.setup_evaluation(args)
    if args.total_batch_size is not None:  # a preset's total batch, shared out (no divisibility needed here)
        args.batch_size = max(1, args.total_batch_size // (info.world_size * args.accum_iter))
    resume = checkpoint.resolve_resume(args.resume, args.output_dir)
    if resume is None and not args.finetune:
        raise ConfigError("nothing to evaluate: pass --resume RUN/best.pth (an action_recognition.train checkpoint) "
                          "or --finetune FINETUNED.pth (a released fine-tuned checkpoint)")
    test_set = build_test_dataset(args)
    model = create_model(args)
    if resume is not None:
        checkpoint.restore(resume, model=model, rank=info.rank, restore_rng=False)
        log.info("evaluating %s", resume)
    else:
        state, pretrained = read_state_dict(args.finetune, args.model_key)
        if pretrained:
            raise ConfigError(f"--finetune {args.finetune} is a VideoMAE pretraining checkpoint (no trained head); "
                              "evaluate a fine-tuned checkpoint or a run's --resume RUN/best.pth")
        load_finetuned(model, state, str(args.finetune), new_head=False, lm4ve_policy=args.lm4ve_policy)
    model.to(info.device)
    evaluate_fn = make_evaluate_fn(args.nb_classes, args.batch_size * args.num_sample)
    metrics = loop.evaluate(evaluate_fn, model, eval_loader(test_set, args), info.device, args.amp)
    return loop.report_results(metrics, args.results, info.is_main)


if __name__ == "__main__":
    loop.run_cli(main, build_parser())
