"""Evaluate a trained (or released) model on ImageNet and its robustness sets: ``python -m image_cls.evaluate``.

    python -m image_cls.evaluate --resume runs/vit_small_llama/checkpoint.pth [--ema] \\
        --eval-sets imagenet,imagenet-c,imagenet-a,imagenet-r,imagenet-sketch --data-path /data/imagenet \\
        --imagenet-c-path /data/imagenet-c --imagenet-a-path /data/imagenet-a --imagenet-r-path /data/imagenet-r \\
        --imagenet-sketch-path /data/imagenet-sketch [--save-logits logits.npy] [--output-json results.json]
    tools/dist_train.sh image_cls.evaluate --resume ...      # several processes: each evaluates a shard

``--resume`` takes an engine checkpoint (``checkpoint.pth`` / ``best.pth``; the frozen LLM block is re-read from
the run's ``llm_path`` — ``--llm-path`` if it moved — and must match the saved fingerprint) or a released
LM4VisualEncoding ViT-LLaMA checkpoint (detected by its keys). Sets (paper Table 1): ``imagenet`` (DATA_PATH's val
split), ``imagenet-c`` (mean top-1 over 15 corruptions x 5 severities, and mCE vs AlexNet), ``imagenet-a`` /
``imagenet-r`` (logits restricted to the set's 200 wnids, 200-way even for a folder with fewer),
``imagenet-sketch``, and ``val`` (the run's own validation set, e.g. Fashion-MNIST's test split). Results are
printed and written as JSON (rank 0).
``--save-logits FILE`` writes the model's full logits in dataset order as .npy (one set: FILE; several:
FILE's stem + ``_<set>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from common.engine import distributed, loop, runner
from common.engine.errors import ConfigError, EngineError
from image_cls.checkpoints import TrainedModel, load_trained_model
from image_cls.data.build import build_task_data, model_classes
from image_cls.data.dali import DaliUnavailable, import_dali
from image_cls.data.imagenet import LAYOUTS, DataPathError, build_imagenet_dataset
from image_cls.data.loaders import PIPELINES, build_eval_loader
from image_cls.data.robustness import ROBUSTNESS_SETS, EvalSet, build_robustness_sets
from image_cls.data.transforms import build_eval_transform, build_imagenet_c_transform
from image_cls.evaluation import predict
from image_cls.metrics import imagenet_c_summary, topk_accuracy

log = logging.getLogger("image_cls.evaluate")

EVAL_SETS = ("val", "imagenet", *ROBUSTNESS_SETS)
# Run-config keys that describe the data; a command-line value wins over the checkpoint's.
DATA_KEYS = {"dataset": "imagenet", "data_path": None, "data_type": "auto", "input_size": None,
             "eval_crop_ratio": 0.875, "val_subset": 0}


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m image_cls.evaluate``."""
    parser = argparse.ArgumentParser(prog="python -m image_cls.evaluate", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resume", required=True, metavar="CKPT", help="engine or official checkpoint")
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights (official: model_ema)")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="engine checkpoints: run config (keys override the checkpoint's) to rebuild the model")
    parser.add_argument("--llm-path", default=None, help="where the frozen LLM checkpoint is now, if it moved")
    parser.add_argument("--eval-sets", default="imagenet", help=f"comma-separated, of {', '.join(EVAL_SETS)}")
    parser.add_argument("--data-path", default=None, help="ImageNet root (val/ or val.tar); default: the run's")
    parser.add_argument("--data-type", default=None, choices=LAYOUTS, help="default: the run's")
    for name in ROBUSTNESS_SETS:
        parser.add_argument(f"--{name}-path", default=None, help=f"{name} root")
    parser.add_argument("--input-size", type=int, default=None, help="default: the run's")
    parser.add_argument("--eval-crop-ratio", type=float, default=None, help="default: the run's (DeiT 0.875)")
    parser.add_argument("--batch-size", type=int, default=128, help="per process")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--pin-mem", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data-pipeline", default="cpu", choices=PIPELINES,
                        help="dali: NVIDIA DALI (the 'dali' extra), gpu: torchvision nvJPEG decode, resize/crop on "
                             "the GPU; for the ImageNet-layout sets (imagenet, robustness sets); 'val' of a small "
                             "data set stays cpu")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--save-logits", default=None, metavar="FILE.npy", help="write logits in dataset order")
    parser.add_argument("--output-json", default=None, metavar="FILE",
                        help="results file (default: eval_results.json beside the checkpoint)")
    return parser


def parse_sets(text: str) -> list[str]:
    """``"imagenet,imagenet-c"`` -> names, each one of ``EVAL_SETS``, de-duplicated in order."""
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [n for n in names if n not in EVAL_SETS]
    if unknown or not names:
        raise ConfigError(f"--eval-sets: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(EVAL_SETS)}")
    return names


def data_settings(args: argparse.Namespace, trained: TrainedModel) -> argparse.Namespace:
    """Data keys: the command line's value, else the run config's, else the default (``DATA_KEYS``)."""
    values = {}
    for key, default in DATA_KEYS.items():
        given = getattr(args, key, None)
        stored = trained.config.get(key)
        values[key] = given if given is not None else (stored if stored is not None else default)
    if values["input_size"] is None:
        values["input_size"] = trained.input_size
    values.update(train_subset=0, batch_size=args.batch_size, num_workers=args.num_workers, pin_mem=args.pin_mem,
                  seed=0)
    return argparse.Namespace(**values)


def build_eval_sets(names: Sequence[str], args: argparse.Namespace, data: argparse.Namespace,
                    num_classes: int) -> list[EvalSet]:
    """Every requested set (ImageNet-C gives 75); paths are checked here, before any evaluation runs."""
    eval_transform = build_eval_transform(data.input_size, crop_ratio=data.eval_crop_ratio)
    classes: list[str] | None = None
    sets: list[EvalSet] = []
    for name in names:
        if name == "val":
            sets.append(EvalSet("val", build_task_data(data, train=False).val))
            continue
        if classes is None:
            classes = model_classes(num_classes, data.data_path if data.dataset == "imagenet" else None,
                                    data.data_type)
        if name == "imagenet":
            if not data.data_path:
                raise DataPathError("--eval-sets imagenet needs --data-path (a folder with val/ or val.tar)")
            class_to_idx = {wnid: i for i, wnid in enumerate(classes)}
            sets.append(EvalSet("imagenet", build_imagenet_dataset(data.data_path, "val", eval_transform,
                                                                   data.data_type, class_to_idx)))
            continue
        root = getattr(args, f"{name.replace('-', '_')}_path")
        if not root:
            raise DataPathError(f"--eval-sets {name} needs --{name}-path")
        sets += build_robustness_sets(name, root, eval_transform, build_imagenet_c_transform(data.input_size),
                                      classes)
    return sets


def score(logits: torch.Tensor, targets: torch.Tensor, logit_indices: torch.Tensor | None) -> dict[str, float]:
    """acc1, acc5 (percent), mean cross-entropy and count, on the set's logit columns."""
    scored = logits if logit_indices is None else logits.index_select(1, logit_indices)
    metrics = topk_accuracy(scored, targets, (1, 5))
    metrics["loss"] = float(F.cross_entropy(scored, targets))
    metrics["n"] = len(targets)
    return metrics


def logits_path(base: Path, set_name: str, single: bool) -> Path:
    """FILE for a single set, else FILE's stem + ``_<set>`` (slashes of ImageNet-C names become ``_``)."""
    if single:
        return base
    return base.with_name(f"{base.stem}_{set_name.replace('/', '_')}{base.suffix or '.npy'}")


def evaluate_sets(model: torch.nn.Module, sets: list[EvalSet], data: argparse.Namespace, num_classes: int,
                  device: torch.device, amp: str, save_logits: Path | None,
                  pipeline: str = "cpu") -> dict[str, Any]:
    """Per-set metrics (and per-set skipped-image counts); logits written by rank 0 when asked."""
    per_set: dict[str, Any] = {}
    for eval_set in sets:
        loader = build_eval_loader(eval_set.dataset, data, pipeline, device=device,
                                   resize=eval_set.corruption is None, rank=distributed.get_rank(),
                                   world_size=distributed.get_world_size())
        with loop.autocast(device, amp):
            logits, targets = predict(model, loader, num_classes)
        metrics = score(logits, targets, eval_set.logit_indices)
        skipped = int(getattr(getattr(eval_set.dataset, "skipped", None), "value", 0))
        metrics["skipped_images"] = int(distributed.all_reduce_sum(torch.tensor(skipped, device=device)).item())
        per_set[eval_set.name] = metrics
        log.info("%s: acc1 %.2f acc5 %.2f (n=%d)", eval_set.name, metrics["acc1"], metrics["acc5"], metrics["n"])
        if save_logits is not None and distributed.is_main_process():
            path = logits_path(save_logits, eval_set.name, len(sets) == 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, logits.numpy())
    return per_set


def summarize(per_set: dict[str, Any]) -> dict[str, Any]:
    """Group ImageNet-C's 75 sets into mean accuracy + mCE; other sets as they are."""
    results: dict[str, Any] = {}
    corruption_acc = {}
    for name, metrics in per_set.items():
        if name.startswith("imagenet-c/"):
            _, corruption, severity = name.split("/")
            corruption_acc[corruption, int(severity)] = metrics["acc1"]
        else:
            results[name] = metrics
    if corruption_acc:
        summary = imagenet_c_summary(corruption_acc)
        summary["per_set"] = {k.removeprefix("imagenet-c/"): v for k, v in per_set.items()
                              if k.startswith("imagenet-c/")}
        results["imagenet-c"] = summary
    return results


def format_results(results: dict[str, Any]) -> str:
    """One line per set: top-1 / top-5 (ImageNet-C: mean top-1 and mCE)."""
    lines = []
    for name, metrics in results.items():
        if name == "imagenet-c":
            lines.append(f"{name:16s} acc1 {metrics['acc1']:6.2f}  mCE {metrics['mce']:6.2f}  "
                         f"({metrics['num_corruptions']} corruptions x 5 severities)")
        else:
            lines.append(f"{name:16s} acc1 {metrics['acc1']:6.2f}  acc5 {metrics['acc5']:6.2f}  (n={metrics['n']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the checkpoint, evaluate every requested set, write the JSON (rank 0); returns the results."""
    names = parse_sets(args.eval_sets)
    info = runner.setup_evaluation(args)
    overrides: dict[str, Any] = {}
    if args.config:
        try:
            overrides = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"--config {args.config}: {err}") from err
        if not isinstance(overrides, dict):
            raise ConfigError(f"--config {args.config}: not a mapping of config keys")
    if args.llm_path:
        overrides["llm_path"] = args.llm_path
    if args.data_pipeline == "dali":
        try:
            import_dali()
        except DaliUnavailable as err:
            raise ConfigError(str(err)) from None
    trained = load_trained_model(args.resume, args.ema, overrides)
    data = data_settings(args, trained)
    sets = build_eval_sets(names, args, data, trained.num_classes)
    model = trained.model.to(info.device)
    per_set = evaluate_sets(model, sets, data, trained.num_classes, info.device, args.amp,
                            Path(args.save_logits) if args.save_logits else None, args.data_pipeline)
    results = {"checkpoint": str(Path(args.resume).resolve()), "checkpoint_kind": trained.kind,
               "weights": trained.weights, "model": trained.config.get("model"), "results": summarize(per_set)}
    if info.is_main:
        out = Path(args.output_json) if args.output_json else Path(args.resume).with_name("eval_results.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(format_results(results["results"]), flush=True)
        print(f"wrote {out}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; bad input exits with one ``error:`` line (2: usage/data, 1: checkpoint)."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except DataPathError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
