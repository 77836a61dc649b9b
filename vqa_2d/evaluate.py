"""Evaluate a trained vqa_2d run on a split, print one JSON line; optionally write VQA answers for EvalAI.

    python -m vqa_2d.evaluate --resume runs/vqa_2d/vqav2_llama/best.pth --data-path /data/vqa_arrow --split val
    python -m vqa_2d.evaluate --resume .../best.pth --data-path /data/vqa_arrow --split test-dev \\
        --answers-out test_dev_answers.json                       # the EvalAI submission (no metric offline)
    python -m vqa_2d.evaluate --resume runs/vqa_2d/f30k/best.pth --data-path /data/f30k --split test \\
        --score-cache runs/vqa_2d/f30k/scores                      # resumable 1k x 5k scoring
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common.engine import loop, runner
from common.engine.errors import ConfigError
from vqa_2d.task import TASK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--resume", required=True, help="engine checkpoint (best.pth / checkpoint.pth)")
    p.add_argument("--data-path", default=None, help="default: the run's")
    p.add_argument("--data-format", default=None, choices=("arrow", "json"), help="default: the run's")
    p.add_argument("--split", default=None, help="evaluation split (default: the run's --eval-split)")
    p.add_argument("--annotations", default=None, help="arrow: official annotation JSON of the split")
    p.add_argument("--tokenizer", default=None, help="default: the run's")
    p.add_argument("--llm-path", default=None, help="the frozen block's checkpoint if it moved")
    p.add_argument("--answers-out", default=None, help="VQA: write [{question_id, answer}] here (EvalAI format)")
    p.add_argument("--score-cache", default=None, help="retrieval: resumable per-rank score files here")
    p.add_argument("--prerank-k", type=int, default=0,
                   help="retrieval: score only each image's / caption's top-K pairs by the bi-encoder cosine; "
                   "with --compare-exhaustive also the exhaustive scores and the differences")
    p.add_argument("--compare-exhaustive", action="store_true")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    p.add_argument("--results", default=None, help="also write the JSON line here")
    return p


def main(args: argparse.Namespace) -> dict:
    info = runner.setup_evaluation(args)
    overrides = {"llm_path": args.llm_path, "data_path": args.data_path, "data_format": args.data_format,
                 "eval_split": args.split, "annotations": args.annotations, "tokenizer": args.tokenizer,
                 "eval_limit": args.eval_limit, "batch_size": args.batch_size, "num_workers": args.num_workers,
                 "score_cache": args.score_cache, "device": args.device,
                 # the pretrained sources only initialised training; the checkpoint holds every weight
                 "clip_path": "", "text_path": "", "meter_ckpt": ""}
    run = runner.load_run(TASK, args.resume, use_ema=args.ema, overrides=overrides)
    run_args = run.args
    run_args.output_dir = str(Path(args.resume).parent)
    TASK.check_args(run_args)
    data = TASK.build_data(run_args, info.rank, info.world_size)
    if not data.evals:
        raise ConfigError(f"split {run_args.eval_split!r} has no evaluation sample")
    model = run.model.to(info.device)
    eval_set = next(iter(data.evals.values()))
    if args.answers_out:
        from vqa_2d.evaluation import vqa_answers

        if run_args.dataset != "vqav2":
            raise ConfigError("--answers-out is for VQA runs")
        answers = vqa_answers(model, eval_set, run_args)
        if info.is_main:
            Path(args.answers_out).write_text(json.dumps(answers))
            print(f"wrote {len(answers)} answers to {args.answers_out}", file=sys.stderr)
        if not any(q.answers or q.labels for q in eval_set.questions):
            return {}
    if run_args.dataset == "f30k":
        from vqa_2d.evaluation import evaluate_retrieval

        stat = Path(args.resume).stat()
        key = f"{Path(args.resume).resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{run.weights}:{run_args.eval_split}"
        run_args.prerank_k = args.prerank_k
        metrics = evaluate_retrieval(model, eval_set, run_args, cache_key=key)
        if args.prerank_k and args.compare_exhaustive:
            run_args.prerank_k = 0
            full = evaluate_retrieval(model, eval_set, run_args, cache_key=key)
            metrics.update({f"exhaustive_{k}": v for k, v in full.items()})
            metrics.update({f"prerank_delta_{k}": metrics[k] - v for k, v in full.items() if "_r" in k})
    else:
        metrics = TASK.evaluate(model, eval_set, run_args)
    return loop.report_results(metrics, args.results, info.is_main)


def run(argv: Sequence[str] | None = None) -> None:
    loop.run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    run()
