"""Benchmarks of the frozen block and what feeds it: python -m tools.bench {step,fp8,loader,input} [options].

``step`` times full training steps (forward + cross-entropy + backward + AdamW step) and inference of image_cls's
ViT (built by its task's ``build_model``: the paper's adapter, Linear -> LLM block(s) -> Linear after the last ViT
block, before the final norm) with random weights, in these configurations (``--configs``, default all):

    vit                ViT alone (eager)                  vit_compile        ViT alone, torch.compile
    reference          + block as the official code runs it (tools/bench_reference.py): separate q/k/v and
                       w1/w3 GEMMs, explicit fp32 softmax over the full score matrix, fp32 frozen weights
    ours_fp32w         + FrozenLM: fused q/k/v and gate/up GEMMs, SDPA, but fp32 frozen weights
    ours               + FrozenLM, frozen weights stored in the compute dtype (the default fast path)
    ours_ckpt          ours + activation checkpointing of the block (LLMSpec.grad_checkpointing)
    ours_compile       ours + torch.compile               ours_compile_ckpt  ... + activation checkpointing
    ours_fp8           ours with FP8 block GEMMs (LLMSpec.fp8)   ours_fp8_compile   ... + torch.compile

Each configuration: warm-up steps (compiled ones: at least 2), then the median of ``--steps`` timed steps (CUDA
events / perf_counter), peak memory, achieved TFLOP/s (analytic model FLOPs, tools/bench_flops.py) and % of a
same-dtype GEMM peak measured in the same run; speed-ups are relative to ``reference``.
``fp8`` times the frozen block's GEMMs alone (forward + input gradient) in the compute dtype and in FP8 and reports
FP8's relative error, per GEMM and for the whole block against the fp32 block.
``loader``: memory of loading the last block of a checkpoint (tools/bench_loader.py); ``input``: the input
pipelines alone and end to end with the model (tools/bench_input.py). Each prints tables and writes JSON
(``--json``).

    python -m tools.bench step                     # CUDA: ViT-S/16 + LLaMA-7B-shaped block, batch 256
    python -m tools.bench step --device cpu        # CPU: ViT-S/16 + 1024-wide LLaMA-like block, batch 8
    python -m tools.bench step --llm-config /ckpt/llama-7b --configs reference,ours,ours_compile --steps 20
    python -m tools.bench fp8 --device cuda        # FP8 vs bf16 GEMMs of a LLaMA-7B-shaped block
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.engine.config import namespace_from_config
from common.frozen_lm import FrozenLM, LMConfig, meta_ffn_hidden, read_lm_config
from common.frozen_lm import fp8 as fp8_ops
from common.task import get_task
from tools.bench_flops import Flops, adapter_flops, llm_block_flops, vit_flops
from tools.bench_measure import (
    PeakMemory,
    fp8_gemm_peak_tflops,
    gemm_peak_tflops,
    median,
    release_memory,
    synchronize,
    time_steps,
)
from tools.bench_reference import ReferenceLM

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_TASK = "image_cls"  # the model whose steps are timed: its task's builder makes it

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
VIT_SHAPES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}
PATCH_SIZE = 16


@dataclass(frozen=True)
class Variant:
    """One benchmarked configuration."""

    name: str
    block: str  # none | reference | ours
    about: str
    fp32_weights: bool = False
    compile: bool = False
    fp8: bool = False
    checkpointing: bool = False


VARIANTS = {v.name: v for v in (
    Variant("vit", "none", "ViT alone"),
    Variant("vit_compile", "none", "ViT alone, torch.compile", compile=True),
    Variant("reference", "reference", "+block, official style (separate q/k/v, fp32 softmax, fp32 weights)",
            fp32_weights=True),
    Variant("ours_fp32w", "ours", "+block ours: fused GEMMs + SDPA, fp32 frozen weights", fp32_weights=True),
    Variant("ours", "ours", "+block ours: frozen weights in the compute dtype"),
    Variant("ours_ckpt", "ours", "ours + activation checkpointing", checkpointing=True),
    Variant("ours_compile", "ours", "ours + torch.compile", compile=True),
    Variant("ours_compile_ckpt", "ours", "ours + torch.compile + activation checkpointing", compile=True,
            checkpointing=True),
    Variant("ours_fp8", "ours", "ours + FP8 block GEMMs", fp8=True),
    Variant("ours_fp8_compile", "ours", "ours + FP8 block GEMMs + torch.compile", fp8=True, compile=True),
)}

# Shapes per device: (vit, llm_dim, batch, tokens, steps, warmup); --smoke for tests.
DEFAULTS = {"cuda": ("small", 4096, 256, 197, 10, 3), "cpu": ("small", 1024, 8, 197, 3, 2),
            "smoke": ("tiny", 128, 2, 17, 2, 1)}


# ---- configuration ----------------------------------------------------------------------------------------------
def make_parser(mode: str = "step", add_help: bool = True) -> argparse.ArgumentParser:
    """The command line of ``step`` (every configuration's steps) or ``fp8`` (the block GEMMs and FP8's error)."""
    p = argparse.ArgumentParser(prog=f"python -m tools.bench {mode}", add_help=add_help,
                                description=__doc__.split("\n")[0],
                                epilog=f"configs: {', '.join(VARIANTS)}" if mode == "step" else None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    if mode == "step":
        p.add_argument("--configs", default="all", help="comma-separated configuration names, or 'all'")
        p.add_argument("--vit", choices=list(VIT_SHAPES), help="ViT size (default small; tiny with --smoke)")
    p.add_argument("--llm-config", help="read the block shape from a checkpoint's config (Meta/HF dir, .gguf); "
                                        "only its config is read, never its weights")
    p.add_argument("--llm-dim", type=int, help="LLaMA-like block of this width (head_dim 128 where it divides, "
                                               "else 64; FFN as Meta's LLaMA). Default: 4096 on CUDA, 1024 on CPU")
    p.add_argument("--llm-blocks", type=int, default=1, help="number of consecutive frozen blocks")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--tokens", type=int, help="tokens per image incl. the class token: 1 + a square (197 = 224/16)")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16",
                   help="compute dtype: autocast dtype, and storage dtype of 'ours' frozen weights")
    p.add_argument("--steps", type=int, help="timed steps per measurement (median reported)")
    p.add_argument("--warmup", type=int, help="untimed steps first (compiled configurations: at least 2)")
    p.add_argument("--json", help=f"output JSON path (default runs/bench/{'bench' if mode == 'step' else 'fp8'}_"
                                  "<device>.json)")
    p.add_argument("--smoke", action="store_true", help="tiny shapes and 2 steps (a test of the benchmark itself)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU); on a shared machine use 1: OpenMP "
                                               "threads waiting for a descheduled sibling make steps 4-6x slower")
    p.set_defaults(mode=mode)
    return p


def resolve_device(choice: str, parser: argparse.ArgumentParser) -> str:
    """``--device`` auto / cpu / cuda -> cpu or cuda (``parser.error`` when CUDA is asked for but absent)."""
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    return choice


def resolve_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Fill device-dependent defaults and validate (``parser.error`` exits with one line on bad input)."""
    args.device = resolve_device(args.device, parser)
    vit, dim, batch, tokens, steps, warmup = DEFAULTS["smoke" if args.smoke else args.device]
    args.vit = getattr(args, "vit", None) or vit
    args.batch_size = args.batch_size or batch
    args.tokens = args.tokens or tokens
    args.steps = args.steps or steps
    args.warmup = warmup if args.warmup is None else args.warmup
    if args.llm_config and args.llm_dim:
        parser.error("give --llm-config or --llm-dim, not both")
    args.llm_dim = args.llm_dim or (None if args.llm_config else dim)
    grid = math.isqrt(max(args.tokens - 1, 0))
    if args.tokens < 2 or grid * grid != args.tokens - 1:
        parser.error(f"--tokens must be 1 + a square number (class token + patch grid), e.g. 197, 50, 17; "
                     f"got {args.tokens}")
    args.img_size = grid * PATCH_SIZE
    for name in ("batch_size", "steps", "llm_blocks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.llm_dim is not None and (args.llm_dim < 64 or args.llm_dim % 64):
        parser.error(f"--llm-dim must be a positive multiple of 64, got {args.llm_dim}")
    if args.mode == "step":
        names = list(VARIANTS) if args.configs == "all" else [c.strip() for c in args.configs.split(",")
                                                              if c.strip()]
        unknown = [n for n in names if n not in VARIANTS]
        if unknown or not names:
            parser.error(f"unknown config(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(VARIANTS)}")
        args.config_names = names
    stem = "bench" if args.mode == "step" else "fp8"
    args.json = args.json or f"runs/bench/{stem}_{args.device}{'_smoke' if args.smoke else ''}.json"
    return args


def llm_config(args: argparse.Namespace) -> LMConfig:
    """The block shape: from ``--llm-config`` (config only) or a LLaMA-like block of width ``--llm-dim``."""
    if args.llm_config:
        return read_lm_config(args.llm_config)
    head_dim = 128 if args.llm_dim % 128 == 0 and args.llm_dim >= 1024 else 64
    heads = args.llm_dim // head_dim
    return LMConfig("llama", dim=args.llm_dim, n_layers=max(args.llm_blocks, 2), n_heads=heads, n_kv_heads=heads,
                    head_dim=head_dim, ffn_hidden=meta_ffn_hidden(args.llm_dim), norm_eps=1e-6)


# ---- models -----------------------------------------------------------------------------------------------------
def write_llm_config(cfg: LMConfig, folder: Path) -> Path:
    """A Hugging Face ``config.json`` of this LLaMA-like block shape (written by transformers' ``LlamaConfig``):
    the ``random_frozen`` variant reads only the config, so no weights are needed."""
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=cfg.dim, intermediate_size=cfg.ffn_hidden, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, num_hidden_layers=cfg.n_layers,
                rms_norm_eps=cfg.norm_eps).save_pretrained(folder)
    return folder


def model_config(variant: Variant, args: argparse.Namespace, llm_path: str | Path) -> dict:
    """The ``image_cls`` run config of ``variant``: a timm ViT of ``--vit`` size with the frozen block(s) of
    ``llm_path`` (random weights, seed 0) after the last ViT block, before the final norm (the paper's placement)."""
    weights = "float32" if variant.fp32_weights else args.dtype
    return {"model": f"vit_{args.vit}_patch{PATCH_SIZE}_224_llm", "input_size": args.img_size, "num_classes": 1000,
            "in_chans": 3, "drop": 0.0, "drop_path": 0.0, "llm_position": "tail",
            "llm_variant": "none" if variant.block == "none" else "random_frozen", "llm_path": str(llm_path),
            "llm_layers": list(range(-args.llm_blocks, 0)), "llm_dtype": weights,
            "llm_grad_checkpointing": variant.checkpointing, "llm_fp8": variant.fp8, "llm_seed": 0, "seed": 0}


def build_model(variant: Variant, args: argparse.Namespace, llm_path: str | Path, device: torch.device) -> nn.Module:
    """The model of ``variant`` as ``image_cls`` builds it (its task's ``build_model``), on ``device``; frozen blocks
    get the same random weights (seed 0). ``reference`` swaps the block for the official-style one."""
    task = get_task(BENCH_TASK)
    run_args = namespace_from_config(task.build_parser(), model_config(variant, args, llm_path))
    torch.manual_seed(0)
    model = task.build_model(run_args)
    if variant.block == "reference":
        model.llm.lm = ReferenceLM.from_frozen_lm(model.llm.lm)
    return model.to(device)


def model_flops(args: argparse.Namespace, cfg: LMConfig, with_block: bool) -> Flops:
    """Analytic FLOPs of one batch (see tools/bench_flops.py)."""
    embed_dim, depth, _ = VIT_SHAPES[args.vit]
    flops = vit_flops(args.batch_size, args.tokens - 1, embed_dim, depth, 4.0, PATCH_SIZE, 3, 1000)
    if with_block:
        flops = flops + adapter_flops(args.batch_size, args.tokens, embed_dim, cfg.dim)
        flops = flops + llm_block_flops(args.batch_size, args.tokens, cfg, args.llm_blocks)
    return flops


# ---- one configuration ------------------------------------------------------------------------------------------
def autocast(device: torch.device, dtype: str):
    """bf16/fp16 autocast (the task trainers' ``--amp``); disabled for float32."""
    return torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "float32")


def _phase(step, args, variant: Variant, device: torch.device, memory: PeakMemory, flops: float,
           peak_tflops: float, rebaseline: bool) -> dict:
    """Warm up, time, and measure one phase (train or infer) of a configuration."""
    memory.reset(rebaseline=rebaseline)
    t0 = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(max(args.warmup, 2 if variant.compile else 0) - 1):
        step()
    times = time_steps(step, args.steps, device)
    seconds = median(times)
    tflops = flops / seconds / 1e12
    return {"step_ms": seconds * 1e3, "min_ms": min(times) * 1e3, "steps_ms": [t * 1e3 for t in times],
            "img_per_s": args.batch_size / seconds,
            "tflops": tflops, "pct_of_gemm_peak": 100 * tflops / peak_tflops, "peak_mem_mib": memory.peak_mib(),
            "first_step_s": first, "flops": flops}


def run_variant(variant: Variant, args: argparse.Namespace, cfg: LMConfig, llm_path: str | Path,
                device: torch.device, peak_tflops: float) -> dict:
    """Train and inference measurements of one configuration (model built and freed here)."""
    release_memory(device)
    memory = PeakMemory(device)
    memory.reset()
    model = build_model(variant, args, llm_path, device)
    runner = torch.compile(model) if variant.compile else model
    flops = model_flops(args, cfg, variant.block != "none")
    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g).to(device)
    labels = torch.randint(0, 1000, (args.batch_size,), generator=g).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.05,
                                  **({"fused": True} if device.type == "cuda" else {}))
    losses: list[torch.Tensor] = []
    model.train()
    train_step = _train_step(runner, optimizer, images, labels, device, args.dtype, losses)
    train = _phase(train_step, args, variant, device, memory, flops.train_step, peak_tflops, rebaseline=False)
    train["last_loss"] = float(losses[-1])
    del train_step, optimizer  # the AdamW state is not part of the inference measurement
    model.eval()
    release_memory(device)
    infer_step = _infer_step(runner, images, device, args.dtype)
    infer = _phase(infer_step, args, variant, device, memory, flops.forward, peak_tflops, rebaseline=False)
    result = {"about": variant.about, "settings": asdict(variant), "train": train, "infer": infer,
              "params_total": sum(p.numel() for p in model.parameters()),
              "params_trainable": sum(p.numel() for p in trainable)}
    if variant.fp8:
        result["fp8_backend"] = fp8_ops.backend_name(device, cfg.dim, cfg.dim)
    if variant.compile:
        torch._dynamo.reset()
    return result


def make_train_step(runner, optimizer, device: torch.device, dtype: str):
    """``step(images, targets) -> loss``: forward under autocast, cross-entropy (hard or soft targets), backward,
    AdamW step."""

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            loss = F.cross_entropy(runner(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _train_step(runner, optimizer, images, labels, device: torch.device, dtype: str, losses: list):
    """One full training step on the fixed batch (``make_train_step``); losses are collected."""
    step_on = make_train_step(runner, optimizer, device, dtype)

    def step():
        losses.append(step_on(images, labels))

    return step


def _infer_step(runner, images, device: torch.device, dtype: str):
    """One inference forward pass (no_grad, autocast)."""

    def step():
        with torch.no_grad(), autocast(device, dtype):
            return runner(images)

    return step


# ---- frozen block GEMMs alone: compute dtype vs FP8 -------------------------------------------------------------
def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def block_gemm_report(args: argparse.Namespace, cfg: LMConfig, device: torch.device) -> dict:
    """Each frozen-block GEMM shape (M = batch x tokens): forward + input gradient in the compute dtype vs FP8
    (activation/gradient quantisation included), with FP8's relative error; and the whole block's FP8 error."""
    dtype = DTYPES[args.dtype]
    m = args.batch_size * args.tokens
    q_width, kv_width = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {"qkv": (cfg.dim, q_width + 2 * kv_width), "out": (q_width, cfg.dim),
              "gate_up" if cfg.gated_ffn else "fc1": (cfg.dim, (2 if cfg.gated_ffn else 1) * cfg.ffn_hidden),
              "down" if cfg.gated_ffn else "fc2": (cfg.ffn_hidden, cfg.dim)}
    report: dict = {"m": m, "gemms": {}, "fp8_backend": fp8_ops.backend_name(device, cfg.dim, cfg.dim)}
    if not fp8_ops.fp8_available():
        report["skipped"] = f"torch {torch.__version__} has no float8 dtypes"
        return report
    g = torch.Generator(device=device).manual_seed(1)  # drawn on the device: M x N is ~10^9 values on a GPU
    steps = max(args.steps, 3)
    for name, (k, n) in shapes.items():
        weight = (torch.randn(n, k, generator=g, device=device) * 0.02).to(dtype)
        x = torch.randn(m, k, generator=g, device=device).to(dtype)
        grad = torch.randn(m, n, generator=g, device=device).to(dtype)
        fp8_weight = fp8_ops.quantize_weight(weight)
        row: dict = {"k": k, "n": n}
        base_ms, base_y, base_dx = _time_linear(F.linear, (weight,), x, grad, steps, device)
        fp8_ms, fp8_y, fp8_dx = _time_linear(fp8_ops.fp8_linear, fp8_weight, x, grad, steps, device)
        flops = 2 * 2 * m * k * n  # forward + input gradient
        row.update(base_ms=base_ms, fp8_ms=fp8_ms, base_tflops=flops / base_ms / 1e9, fp8_tflops=flops / fp8_ms / 1e9,
                   fp8_speedup=base_ms / fp8_ms, fp8_rel_err_out=_rel_err(fp8_y, base_y),
                   fp8_rel_err_grad_in=_rel_err(fp8_dx, base_dx))
        report["gemms"][name] = row
    report["block"] = _block_fp8_error(args, cfg, device)
    return report


def _time_linear(linear, weights: tuple, x: torch.Tensor, grad: torch.Tensor, steps: int,
                 device: torch.device) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Median ms of ``linear(x, *weights)`` forward + input gradient; and its output and input gradient."""
    xg = x.detach().requires_grad_()

    def fwd_bwd():
        xg.grad = None
        out = linear(xg, *weights)
        out.backward(grad)
        return out

    fwd_bwd()
    synchronize(device)
    ms = median(time_steps(fwd_bwd, steps, device)) * 1e3
    out = fwd_bwd().detach()
    return ms, out, xg.grad.detach()


def _block_fp8_error(args: argparse.Namespace, cfg: LMConfig, device: torch.device) -> dict:
    """Relative errors vs the fp32 block (same random weights, random input) of the block's update (output minus
    residual input) and of the input gradient: the compute-dtype block, the FP8 block computing in that dtype,
    and the FP8 block computing in fp32 (FP8 quantisation alone)."""
    g = torch.Generator(device="cpu").manual_seed(2)
    x = torch.randn(min(args.batch_size, 8), args.tokens, cfg.dim, generator=g).to(device)
    grad = torch.randn(x.shape, generator=g).to(device)
    variants = {"float32": ("float32", False), args.dtype: (args.dtype, False), f"fp8_{args.dtype}": (args.dtype, True),
                "fp8_float32": ("float32", True)}
    out = {}
    for label, (dtype, fp8) in variants.items():
        lm = FrozenLM.from_config(cfg, n_blocks=args.llm_blocks, dtype=dtype, seed=0, device=device,
                                  final_norm="none", fp8=fp8)
        xi = x.clone().requires_grad_()
        y = lm(xi)
        y.backward(grad)
        out[label] = ((y - x).detach(), xi.grad - grad)
    ref = out.pop("float32")
    return {"batch": x.shape[0], "vs_float32": {
        label: {"rel_err_update": _rel_err(upd, ref[0]), "rel_err_grad_in": _rel_err(gin, ref[1])}
        for label, (upd, gin) in out.items()}}


# ---- report -----------------------------------------------------------------------------------------------------
def add_speedups(results: dict) -> None:
    """``speedup_vs_reference`` (reference time / time) for train and infer, when ``reference`` ran."""
    ref = results.get("reference")
    if not ref or "train" not in ref:
        return
    for res in results.values():
        if "train" in res:
            res["speedup_vs_reference"] = {ph: ref[ph]["step_ms"] / res[ph]["step_ms"] for ph in ("train", "infer")}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(meta: dict, results: dict) -> str:
    """Human-readable table of all configurations (speed-ups vs ``reference``)."""
    lines = [f"device: {meta['device']} | torch {meta['torch']} | dtype {meta['dtype']} | "
             f"ViT-{meta['vit']} + {meta['llm_blocks']}x LLM block {meta['llm_shape']} | batch {meta['batch_size']} "
             f"x {meta['tokens']} tokens | median of {meta['steps']} steps",
             f"GEMM peak ({meta['dtype']}, measured): {meta['gemm_peak_tflops']:.2f} TFLOP/s"
             + (f" | FP8 GEMM peak: {meta['fp8_gemm_peak_tflops']:.1f} TFLOP/s" if meta.get("fp8_gemm_peak_tflops")
                else "") + f" | load average at start {meta.get('loadavg_start')}", ""]
    head = (f"{'config':<18} {'train ms':>9} {'img/s':>8} {'x ref':>6} {'TFLOP/s':>8} {'%peak':>6} {'mem MiB':>8} "
            f"{'1st s':>6} | {'infer ms':>9} {'img/s':>8} {'x ref':>6} {'TFLOP/s':>8} {'mem MiB':>8}")
    lines += [head, "-" * len(head)]
    for name, res in results.items():
        if "train" not in res:
            lines.append(f"{name:<18} {res.get('error') or res.get('skipped')}")
            continue
        tr, inf, sp = res["train"], res["infer"], res.get("speedup_vs_reference", {})
        lines.append(f"{name:<18} {tr['step_ms']:>9.1f} {tr['img_per_s']:>8.1f} {_fmt(sp.get('train'), '>6.2f')} "
                     f"{tr['tflops']:>8.3f} {tr['pct_of_gemm_peak']:>6.1f} {_fmt(tr['peak_mem_mib'], '>8.0f')} "
                     f"{tr['first_step_s']:>6.1f} | {inf['step_ms']:>9.1f} {inf['img_per_s']:>8.1f} "
                     f"{_fmt(sp.get('infer'), '>6.2f')} {inf['tflops']:>8.3f} {_fmt(inf['peak_mem_mib'], '>8.0f')}")
    return "\n".join(lines)


def format_gemm_table(report: dict, dtype: str) -> str:
    """The block-GEMM part: compute dtype vs FP8 per GEMM shape, and the whole block's FP8 error."""
    if "skipped" in report:
        return f"block GEMMs: skipped ({report['skipped']})"
    lines = [f"frozen block GEMMs alone, forward + input gradient, M = {report['m']} (FP8 backend: "
             f"{report['fp8_backend']})",
             f"{'gemm':<8} {'K':>6} {'N':>6} {dtype + ' ms':>12} {'fp8 ms':>9} {'speedup':>8} {'err out':>8} "
             f"{'err dx':>8}"]
    for name, row in report["gemms"].items():
        lines.append(f"{name:<8} {row['k']:>6} {row['n']:>6} {row['base_ms']:>12.2f} {row['fp8_ms']:>9.2f} "
                     f"{row['fp8_speedup']:>8.2f} {row['fp8_rel_err_out']:>8.4f} {row['fp8_rel_err_grad_in']:>8.4f}")
    lines.append("whole block vs the fp32 block (random weights): relative error of the update (output - input) "
                 "/ of the input gradient")
    for label, err in report["block"]["vs_float32"].items():
        lines.append(f"  {label:<16} {err['rel_err_update']:.4f} / {err['rel_err_grad_in']:.4f}")
    return "\n".join(lines)


def describe_device(device: torch.device) -> str:
    """GPU name, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages (other processes competing for the CPU make CPU timings noisy)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _prepare_block_bench(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Start of ``step`` and ``fp8``: the resolved arguments, the thread count set, the LLM config and the device."""
    args = resolve_args(args, parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, _llm_config_or_exit(args, parser), torch.device(args.device)


def run_step(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``step``: every requested configuration's train and inference steps; prints the table, writes JSON."""
    args, cfg, device = _prepare_block_bench(args, parser)
    gemm_size = 4096 if device.type == "cuda" else 1024
    peak = gemm_peak_tflops(DTYPES[args.dtype], device, gemm_size)
    meta = {**_meta(args, cfg, device), "gemm_peak_tflops": peak, "gemm_peak_size": gemm_size,
            "fp8_gemm_peak_tflops": fp8_gemm_peak_tflops(device, gemm_size),
            "memory_method": PeakMemory(device).method, "loadavg_start": _loadavg()}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_llm_") as scratch:
        llm_path = args.llm_config or write_llm_config(cfg, Path(scratch))
        for name in args.config_names:
            variant = VARIANTS[name]
            if variant.fp8 and not fp8_ops.fp8_available():
                results[name] = {"about": variant.about, "skipped": f"torch {torch.__version__} has no float8 dtypes"}
                continue
            print(f"[bench] {name}: {variant.about}", file=sys.stderr, flush=True)
            try:
                results[name] = run_variant(variant, args, cfg, llm_path, device, peak)
            except Exception as e:  # one failing configuration (e.g. a compiler error) must not lose the others
                results[name] = {"about": variant.about, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
                print(f"[bench] {name} failed: {results[name]['error']}", file=sys.stderr, flush=True)
    add_speedups(results)
    meta["loadavg_end"] = _loadavg()
    print(format_table(meta, results))
    _write_json(args.json, {"meta": meta, "configs": results})
    return 0 if all("error" not in r for r in results.values()) else 1


def run_fp8(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``fp8``: the frozen block's GEMMs alone in the compute dtype and in FP8, and FP8's error; prints, writes JSON."""
    args, cfg, device = _prepare_block_bench(args, parser)
    meta = {**_meta(args, cfg, device), "fp8_gemm_peak_tflops": fp8_gemm_peak_tflops(device, 4096 if
                                                                                      device.type == "cuda" else 1024)}
    report = block_gemm_report(args, cfg, device)
    print(format_gemm_table(report, args.dtype))
    _write_json(args.json, {"meta": meta, "block_gemms": report})
    return 0


def _llm_config_or_exit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LMConfig:
    try:
        return llm_config(args)
    except Exception as e:  # a bad --llm-config path: CheckpointError / OSError / ValueError
        parser.error(f"--llm-config: {e}")


def _meta(args: argparse.Namespace, cfg: LMConfig, device: torch.device) -> dict:
    """What every JSON report starts with: device, versions, shapes, the command line."""
    return {"device": describe_device(device), "torch": torch.__version__, "dtype": args.dtype, "vit": args.vit,
            "llm_shape": (f"dim {cfg.dim}, {cfg.n_heads}x{cfg.head_dim} heads ({cfg.n_kv_heads} kv), ffn "
                          f"{cfg.ffn_hidden}, {cfg.family}"), "llm_config": cfg.to_dict(),
            "llm_blocks": args.llm_blocks, "batch_size": args.batch_size, "tokens": args.tokens,
            "img_size": args.img_size, "steps": args.steps, "warmup": args.warmup,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m tools.bench", *sys.argv[1:]])}


def _write_json(path: str, payload: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {out}")


def subcommands() -> dict[str, tuple[str, Callable, Callable]]:
    """name -> (one-line help, make_parser(add_help=...), run(args, parser) -> exit code)."""
    from tools import bench_input, bench_loader

    return {
        "step": ("train/inference step time, memory and TFLOP/s of every optimisation level",
                 functools.partial(make_parser, "step"), run_step),
        "fp8": ("the frozen block's GEMMs in the compute dtype vs FP8: time and FP8's relative error",
                functools.partial(make_parser, "fp8"), run_fp8),
        "loader": ("memory and time of loading the last block of a LLaMA-7B-shaped checkpoint",
                   bench_loader.make_parser, bench_loader.run),
        "input": ("input pipelines (timm CPU, GPU, DALI) alone and feeding the model",
                  bench_input.make_parser, bench_input.run),
    }


def make_main_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """``python -m tools.bench {step,fp8,loader,input} ...`` and the subcommands' own parsers."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0],
                                     epilog="'python -m tools.bench SUBCOMMAND --help' lists a subcommand's options")
    commands = subcommands()
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(commands) + "}")
    parsers = {}
    for name, (about, make, _) in commands.items():
        own = make(add_help=False)
        parsers[name] = sub.add_parser(name, parents=[own], help=about, description=about, epilog=own.epilog)
    return parser, parsers


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench SUBCOMMAND [options]`` (exit 2 with one line on bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, parsers = make_main_parser()
    args = parser.parse_args(argv)
    return subcommands()[args.command][2](args, parsers[args.command])


if __name__ == "__main__":
    sys.exit(main())
