"""Input pipelines against the model they feed (``python -m tools.bench input``): img/s of timm's CPU pipeline and
of the two GPU pipelines, alone and end to end with a training step, and the model's own step rate, in one run.

Reads ``DATA_PATH/train`` (folders or ``train.tar``) with DeiT's training recipe (RandomResizedCrop, flip,
RandAugment m9, normalise, random erasing; Mixup/CutMix on the device batch as ``image_cls.train`` does). Loaders
and loss come from the image_cls task (``get_task("image_cls").build_data`` with ``--data-pipeline NAME``, and its
``loss_fn``), the model from ``tools.bench`` (the task's ``build_model``):

- ``cpu``: DataLoader with ``--workers`` processes and timm's transform (image_cls/data/transforms.py), pinned;
- ``dali``: image_cls/data/dali.py with ``--workers`` reader processes and DALI threads, on the GPU (nvJPEG
  decode) when CUDA is available, else on DALI's CPU backend;
- ``gpu``: image_cls/data/gpu_pipeline.py: ``--workers`` DataLoader processes read files, the training process
  decodes (batched nvJPEG on CUDA) and augments on the device.

For each pipeline: *input* = batches delivered on the device per second; *end to end* = training steps per second
with the batches coming from the pipeline; and *model only* = the same step on one batch already on the device.
The model is ``tools.bench``'s ViT + frozen LLaMA-shaped block with random weights (``--config``, default
``ours_compile`` on CUDA, ``ours`` on the CPU). Wall-clock rates over ``--batches`` batches after ``--warmup``
(start-up excluded); epochs restart as needed (their restart cost included). Prints a table, writes JSON.

    python -m tools.bench input --data-path /data/imagenet --workers 16             # CUDA: ViT-S + 4096 block
    python -m tools.bench input --synthetic 4096 --workers 16                       # no data at hand
    python -m tools.bench input --data-path DIR --workers 1 --batches 4 --device cpu
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from common.engine import distributed
from common.engine.errors import EngineError
from common.task import get_task
from tools.bench import (
    BENCH_TASK,
    DTYPES,
    PATCH_SIZE,
    VARIANTS,
    VIT_SHAPES,
    autocast,
    build_model,
    describe_device,
    llm_config,
    resolve_device,
    write_llm_config,
)
from tools.bench_measure import release_memory, synchronize

# Per device: (vit, llm_dim, batch, input size, timed batches, warm-up batches, model configuration).
DEFAULTS = {"cuda": ("small", 4096, 256, 224, 50, 5, "ours_compile"), "cpu": ("tiny", 256, 16, 64, 6, 1, "ours")}


def pipelines() -> tuple[str, ...]:
    """The task's ``--data-pipeline`` choices (image_cls: cpu, dali, gpu)."""
    parser = get_task(BENCH_TASK).build_parser()
    return tuple(next(a.choices for a in parser._actions if a.dest == "data_pipeline"))


def make_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The input mode's command line."""
    p = argparse.ArgumentParser(prog="python -m tools.bench input", description=__doc__.splitlines()[0],
                                add_help=add_help)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-path", help="ImageNet layout: train/<wnid>/ folders or train.tar")
    source.add_argument("--synthetic", type=int, metavar="N", help="N random-texture 500x375 JPEGs of ~80 KB "
                                                                   "(ImageNet-like) written to a temporary folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--pipelines", help=f"comma-separated, of {', '.join(pipelines())} (default: cpu, gpu, and dali "
                                       "when it is installed)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers / DALI reader processes and threads")
    p.add_argument("--batches", type=int, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, help="untimed batches before each measurement")
    p.add_argument("--batch-size", type=int, help="even (Mixup/CutMix pairs images)")
    p.add_argument("--input-size", type=int, help="crop size, a multiple of 16 (the ViT's patch)")
    p.add_argument("--config", choices=[n for n, v in VARIANTS.items() if v.block != "reference"],
                   help="model configuration of tools.bench (default ours_compile on CUDA, ours on the CPU)")
    p.add_argument("--vit", choices=list(VIT_SHAPES))
    p.add_argument("--llm-dim", type=int, help="width of the LLaMA-shaped block (4096 = LLaMA-7B)")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16", help="autocast and frozen-weight dtype")
    p.add_argument("--json", help="output JSON path (default runs/bench/input_<device>.json)")
    return p


def resolve_args(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Device defaults and checks (``parser.error``: one line, exit 2)."""
    opts.device = resolve_device(opts.device, parser)
    vit, dim, batch, size, batches, warmup, config = DEFAULTS[opts.device]
    opts.vit, opts.llm_dim, opts.batch_size = opts.vit or vit, opts.llm_dim or dim, opts.batch_size or batch
    opts.input_size, opts.batches = opts.input_size or size, opts.batches or batches
    opts.warmup = warmup if opts.warmup is None else opts.warmup
    opts.config = opts.config or config
    if opts.pipelines is None:
        opts.pipelines = "cpu,gpu" + (",dali" if importlib.util.find_spec("nvidia.dali") else "")
    opts.pipelines = [name.strip() for name in opts.pipelines.split(",") if name.strip()]
    known = pipelines()
    if not opts.pipelines or any(name not in known for name in opts.pipelines):
        parser.error(f"--pipelines: comma-separated names of {', '.join(known)}")
    if opts.batch_size < 2 or opts.batch_size % 2:
        parser.error("--batch-size must be even (Mixup/CutMix mix pairs of images)")
    if opts.input_size < 48 or opts.input_size % PATCH_SIZE:
        parser.error(f"--input-size must be a multiple of {PATCH_SIZE}, at least 48")
    if opts.batches < 1 or opts.workers < 0 or opts.llm_dim % 64:
        parser.error("--batches must be >= 1, --workers >= 0 and --llm-dim a multiple of 64")
    opts.json = opts.json or f"runs/bench/input_{opts.device}.json"
    return opts


def write_synthetic_jpegs(root: Path, count: int, classes: int = 10, seed: int = 0) -> Path:
    """``count`` ImageNet-like JPEGs under ``root/train/<class>/`` (2 per class under ``root/val/``): 500x375
    smooth random textures with noise, quality 90, about 80 KB each; returns ``root``."""
    rng = np.random.default_rng(seed)
    classes = min(classes, count)  # every validation class must be a training class
    for split, n in (("train", count), ("val", 2 * classes)):
        for i in range(n):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            base = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC), dtype=np.int16)
            pixels = np.clip(base + rng.normal(0, 11, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:07d}.JPEG", quality=90)
    return root


def _forever(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, epoch after epoch (``set_epoch`` on the loader or its sampler)."""
    epoch = 0
    while True:
        for owner in (loader, getattr(loader, "sampler", None)):
            if hasattr(owner, "set_epoch"):
                owner.set_epoch(epoch)
        yield from loader
        epoch += 1


def _rate(fn: Callable[[], int], batches: int, warmup: int, device: torch.device) -> float:
    """Images per second of ``fn`` (returns the images it handled) over ``batches`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += fn()
    synchronize(device)
    return images / (time.perf_counter() - start)


def task_args(opts: argparse.Namespace, pipeline: str) -> argparse.Namespace:
    """The ``image_cls.train`` options of this measurement (its parser: DeiT's recipe, Mixup/CutMix on)."""
    task = get_task(BENCH_TASK)
    args = task.build_parser().parse_args([
        "--data-path", opts.data_path, "--batch-size", str(opts.batch_size), "--input-size", str(opts.input_size),
        "--num-workers", str(opts.workers), "--no-repeated-aug", "--data-pipeline", pipeline,
        "--device", opts.device])
    task.check_args(args)
    return args


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one run (see the module docstring): loaders and loss from the task
    (``build_data`` / ``loss_fn`` with the pipeline as ``--data-pipeline``), the model from ``tools.bench``."""
    task = get_task(BENCH_TASK)
    device = distributed.init_distributed(opts.device).device
    variant = VARIANTS[opts.config]
    spec = argparse.Namespace(vit=opts.vit, img_size=opts.input_size, llm_blocks=1, dtype=opts.dtype,
                              llm_config=None, llm_dim=opts.llm_dim)
    with tempfile.TemporaryDirectory(prefix="bench_llm_") as scratch:
        model = build_model(variant, spec, write_llm_config(llm_config(spec), Path(scratch)), device).train()
    runner = torch.compile(model) if variant.compile else model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    g = torch.Generator().manual_seed(0)
    fixed = (torch.randn(opts.batch_size, 3, opts.input_size, opts.input_size, generator=g).to(device),
             torch.randint(0, 1000, (opts.batch_size,), generator=g).to(device))
    warmup = max(opts.warmup, 2 if variant.compile else 0)
    results: dict[str, Any] = {}
    for name in opts.pipelines:
        args = task_args(opts, name)
        data = task.build_data(args, 0, 1)
        print(f"[bench input] {name}", file=sys.stderr, flush=True)
        if len(data.train) < 1:
            raise EngineError(f"{opts.data_path}: fewer training images than one batch")
        args.num_classes = 1000  # the benchmark model's head: the data's labels are < 1000 as well
        loss_fn = task.loss_fn(args, data)  # Mixup/CutMix + soft-target cross-entropy, as image_cls.train

        def train_on(images: torch.Tensor, labels: torch.Tensor, loss_fn=loss_fn) -> int:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, opts.dtype):
                loss = loss_fn(runner, (images, labels))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return images.shape[0]

        if "model_only_img_s" not in results:
            results["images"] = len(data.train) * opts.batch_size  # images of one epoch (full batches)
            results["model_only_img_s"] = _rate(lambda: train_on(*fixed), opts.batches, warmup, device)
        batches = _forever(data.train)

        def deliver(batches: Iterator = batches) -> int:
            images, _ = next(batches)
            return images.to(device, non_blocking=True).shape[0]

        input_rate = _rate(deliver, opts.batches, max(1, opts.warmup), device)
        e2e = _rate(lambda batches=batches: train_on(*next(batches)), opts.batches, opts.warmup, device)
        results[name] = {"input_img_s": input_rate, "end_to_end_img_s": e2e,
                         "end_to_end_over_model_only": e2e / results["model_only_img_s"]}
        del batches, data
        release_memory(device)
    return results


def format_table(meta: dict[str, Any], results: dict[str, Any]) -> str:
    """Markdown table of the run."""
    lines = [f"{meta['device']}, torch {meta['torch']}, {meta['model']}, batch {meta['batch_size']}, "
             f"{meta['input_size']} px, {meta['workers']} workers, {meta['images']} training images", "",
             "| pipeline | input img/s | end-to-end train img/s | end to end / model only |", "|---|---|---|---|",
             f"| (model only, batch on the device) | | {results['model_only_img_s']:.1f} | 1.00 |"]
    for name in pipelines():
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {r['input_img_s']:.1f} | {r['end_to_end_img_s']:.1f} | "
                         f"{r['end_to_end_over_model_only']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench_input`` (the same as ``python -m tools.bench input``)."""
    parser = make_parser()
    return run(parser.parse_args(argv), parser)


def run(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the input benchmark; print the table and write JSON (one line and the error family's code on bad
    input: 4 for a bad data path, 2 for a bad setting)."""
    opts = resolve_args(opts, parser)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        if opts.synthetic:
            opts.data_path = str(write_synthetic_jpegs(Path(tmp), opts.synthetic))
        try:
            results = measure(opts)
        except EngineError as err:  # bad data path (4), DALI missing or misconfigured (2)
            print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
            return err.exit_code
        except (ValueError, ImportError) as err:
            print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
            return 2
    device = torch.device(opts.device)
    meta = {"device": describe_device(device), "torch": torch.__version__, "batch_size": opts.batch_size,
            "input_size": opts.input_size, "workers": opts.workers, "data": opts.data_path if not opts.synthetic
            else f"{opts.synthetic} synthetic 500x375 JPEGs", "batches": opts.batches, "warmup": opts.warmup,
            "model": f"ViT-{opts.vit} + {opts.llm_dim}-wide block, {opts.config}, {opts.dtype}",
            "images": results.pop("images"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m tools.bench", *sys.argv[1:]])}
    print(format_table(meta, results))
    out = Path(opts.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nwrote {out}")
    return 0
