"""Information-filtering analysis of a trained model (paper §6): activation maps per stage and pseudo-mask mIoU.

    python -m tools.analyze --resume runs/vit_s/frozen/seed0/checkpoint.pth --inputs ImageNetS50/validation \\
        [--task image_cls] [--max-inputs 16] [--out analysis_out/]

Works for every task whose ``common.task.Task`` implements ``analysis_samples`` (the inputs, read from files of the
task's format) and ``analysis_spec`` (which tokens, and how they map to the input); the task is the checkpoint's
(its saved config's ``task`` key) unless ``--task`` says otherwise, and the run is rebuilt with
``common.engine.runner.load_run``. A task without these hooks is skipped with one line.

Stages: after the encoder, after in_proj (F_L1), after the LLM attention, after the LLM FFN, after out_proj (F_L2),
plus the CLS->token attention of the encoder's last block and of the LLM block (summed over heads) where the model
has a CLS token. Measures: ``magnitude`` and ``frequency`` (``tools.analysis.measures``), min-max normalised per
input. What is written depends on the task's token layout:

- image patches: ``overlays_<measure>.png`` (rows = images, columns = stages) and, for images that have an
  ImageNet-S mask (``<name>.png`` beside the image, or ``<split>-segmentation/<wnid>/<name>.png``), ``miou.json``
  and ``miou.md``: pseudo-mask (activation > t, best t in 0.1..0.9 per image) mIoU per stage over images;
- point groups: ``overlays_<measure>.png`` (rows = clouds, columns = stages): the group centres in 3-D over the
  input points, coloured by the token measure;
- video tubelets: ``overlays_<measure>_<k>_<name>.png`` per video (rows = token time steps, each drawn on the
  middle frame of its tubelet, columns = stages).

Python API (used by the README demo):
    maps = activation_maps(model, images, stages=None, measure="magnitude")   # {stage: (B, H_tok, W_tok)}
    save_overlay_grid(images, maps, "maps.png")
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tools.analysis.images import load_mask
from tools.analysis.layouts import GroupCentres, PatchGrid, TubeletGrid
from tools.analysis.maps import activation_maps, capture_tokens, maps_from_capture
from tools.analysis.measures import MEASURES
from tools.analysis.overlay import save_overlay_grid, save_point_grid, save_video_grid
from tools.analysis.pseudo_mask import THRESHOLDS, downsample_mask, pseudo_mask_miou

__all__ = ["activation_maps", "analyze_inputs", "main", "miou_table", "save_overlay_grid"]

DEFAULT_CROP_RATIO = 0.875  # DeiT's evaluation crop, for tasks whose run config has no eval_crop_ratio


@dataclass
class Analysis:
    """Maps of every analysed input: {measure: {stage: (n, ...)}}, the layout, and point-group centres (n, G, 3)."""

    maps: dict[str, dict[str, torch.Tensor]]
    layout: Any
    positions: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)


def _to_device(inputs: Any, device: torch.device | str) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs


def batches_of(samples: list, batch_size: int) -> list[Any]:
    """Model inputs of the samples (each a batch of one) joined into batches of up to ``batch_size`` where they are
    tensors of one shape; anything else (dicts, ragged inputs) runs one sample at a time."""
    out: list[Any] = []
    group: list[torch.Tensor] = []
    for sample in samples:
        x = sample.inputs
        joinable = isinstance(x, torch.Tensor) and (not group or group[0].shape[1:] == x.shape[1:])
        if group and (not joinable or len(group) == batch_size):
            out.append(torch.cat(group))
            group = []
        if isinstance(x, torch.Tensor):
            group.append(x)
        else:
            out.append(x)
    if group:
        out.append(torch.cat(group))
    return out


def analyze_inputs(task, model: torch.nn.Module, samples: list, measures: tuple[str, ...] = MEASURES,
                   batch_size: int = 8, device: str | torch.device = "cpu") -> Analysis:
    """Maps of every sample at every stage of ``task.analysis_spec`` (one spec per batch: layouts such as point-group
    centres depend on the input)."""
    model = model.to(device)
    parts: dict[str, dict[str, list[torch.Tensor]]] = {m: {} for m in measures}
    positions: list[torch.Tensor] = []
    layout = None
    for inputs in batches_of(samples, batch_size):
        inputs = _to_device(inputs, device)
        spec = task.analysis_spec(model, inputs)
        layout = spec.layout
        capture = capture_tokens(model, inputs, spec)
        if capture.positions is not None:
            positions.append(capture.positions.cpu())
        for measure in measures:
            for name, values in maps_from_capture(capture, spec, measure).items():
                parts[measure].setdefault(name, []).append(values)
    maps = {m: {name: torch.cat(chunks) for name, chunks in stages.items()} for m, stages in parts.items()}
    return Analysis(maps, layout, torch.cat(positions) if positions else None)


def miou_scores(maps: dict[str, dict[str, torch.Tensor]], masks: list[tuple[np.ndarray, np.ndarray] | None],
                names: list[str], thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[dict[str, dict], list[str]]:
    """Pseudo-mask mIoU per (measure, stage) over the images with a non-empty token-grid mask.

    ``masks[i]``: (foreground, ignore) pixel masks of image i in the model's input geometry, or None.
    Returns ({"<stage>/<measure>" or "<attention stage>": {miou, n_images, images: [...]}}, notes).
    """
    notes: list[str] = []
    any_map = next(iter(next(iter(maps.values())).values()))
    grid = tuple(any_map.shape[1:])
    if len(grid) != 2:
        raise ValueError("pseudo-mask mIoU needs 2-D token maps (image tasks)")
    chosen, targets, valids = [], [], []
    for index, mask in enumerate(masks):
        if mask is None:
            continue
        target, valid = downsample_mask(mask[0], grid, mask[1])
        if not target.any():
            notes.append(f"{names[index]}: no foreground token after downsampling; left out of the mIoU")
            continue
        chosen.append(index)
        targets.append(target)
        valids.append(valid)
    results: dict[str, dict] = {}
    if not chosen:
        return results, notes
    for measure, stages in maps.items():
        for stage, values in stages.items():
            key = stage if stage.startswith("cls_attn") else f"{stage}/{measure}"
            if key in results:
                continue
            score = pseudo_mask_miou(values[chosen].numpy(), targets, valids, thresholds)
            results[key] = {
                "miou": score.miou,
                "n_images": score.n_images,
                "images": [{"image": names[i], "iou": iou, "threshold": t}
                           for i, iou, t in zip(chosen, score.ious, score.thresholds)],
            }
    return results, notes


def miou_table(results: dict[str, dict]) -> str:
    """Markdown table: one row per stage, one column per measure (attention rows in the 'attention' column)."""
    measures = sorted({k.split("/")[1] for k in results if "/" in k}, key=lambda m: MEASURES.index(m))
    stages = list(dict.fromkeys(k.split("/")[0] for k in results))
    header = ["stage", *measures, "attention"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in stages:
        cells = [stage]
        for measure in measures:
            entry = results.get(f"{stage}/{measure}")
            cells.append(f"{100 * entry['miou']:.1f}" if entry else "–")
        entry = results.get(stage)
        cells.append(f"{100 * entry['miou']:.1f}" if entry else "–")
        lines.append("| " + " | ".join(cells) + " |")
    n = max((r["n_images"] for r in results.values()), default=0)
    return "\n".join(lines) + f"\n\nmIoU (%) over {n} image(s); pseudo-mask = activation > t, best t per image."


# ---- command line -------------------------------------------------------------------------------------------------
def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files given directly, or found recursively (sorted) in folders; hidden files and mask PNGs beside a
    same-named file (ImageNet-S ``<name>.png`` next to ``<name>.JPEG``) are left out."""
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"no such input file or folder: {path}")
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        stems = {(p.parent, p.stem) for p in files if p.suffix.lower() != ".png"}
        found += [p for p in files if p.suffix.lower() != ".png" or (p.parent, p.stem) not in stems]
    return found


def task_of_checkpoint(path: Path) -> str:
    """The task of a run: the ``task`` key of ``config.yaml`` beside the checkpoint, else of the checkpoint's saved
    config (older runs: the folder of the preset they started from)."""
    from common.engine import checkpoint
    from common.engine.errors import CheckpointError
    from tools.runlog import infer_task

    beside = path.parent / "config.yaml"
    if beside.is_file():
        config = yaml.safe_load(beside.read_text(encoding="utf-8"))
        task = infer_task(config if isinstance(config, dict) else None, path.parent)
        if task != "unknown":
            return task
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    task = infer_task(dict(checkpoint.load(path).get("config") or {}), path.parent)
    if task == "unknown":
        raise ValueError(f"{path}: the run config names no task; give --task")
    return task


def read_samples(task, run_args: argparse.Namespace, paths: list[Path], limit: int) -> tuple[list, list[Path]]:
    """Up to ``limit`` samples of ``task.analysis_samples``, one file at a time (an unreadable file is skipped
    with one line on stderr), and the file each sample came from."""
    from common.engine.errors import EngineError

    samples, sources = [], []
    for path in paths:
        if len(samples) >= limit:
            break
        try:
            found = task.analysis_samples(run_args, [str(path)])
        except (OSError, ValueError, EngineError) as error:  # unreadable / corrupt input: skip it, keep going
            print(f"warning: skipping {path}: {str(error).splitlines()[0]}", file=sys.stderr)
            continue
        found = found[: limit - len(samples)]
        samples += found
        sources += [path] * len(found)
    return samples, sources


def write_outputs(analysis: Analysis, samples: list, sources: list[Path], run_args: argparse.Namespace,
                  out: Path, grid: int) -> list[Path]:
    """The pictures of the layout (and the mIoU of images with masks); returns the files written."""
    written: list[Path] = []
    shown = samples[:grid]
    titles = [s.name for s in shown]
    for measure, stages in analysis.maps.items():
        head = {k: v[: len(shown)] for k, v in stages.items()}
        if isinstance(analysis.layout, PatchGrid):
            display = np.stack([np.asarray(s.display, dtype=np.float32) for s in shown])
            written.append(save_overlay_grid(display, head, out / f"overlays_{measure}.png", titles=titles))
        elif isinstance(analysis.layout, GroupCentres):
            points = [torch.as_tensor(np.asarray(s.display, dtype=np.float32)) for s in shown]
            written.append(save_point_grid(analysis.positions[: len(shown)], head, out / f"overlays_{measure}.png",
                                           points=points, titles=titles, up_axis=analysis.layout.up_axis))
        elif isinstance(analysis.layout, TubeletGrid):
            for k, sample in enumerate(shown):
                name = Path(sample.name).stem.replace("/", "_")
                written.append(save_video_grid(np.asarray(sample.display), {s: v[k] for s, v in head.items()},
                                               out / f"overlays_{measure}_{k}_{name}.png", title=sample.name))
        else:
            raise ValueError(f"no drawing for the layout {type(analysis.layout).__name__}")
    if isinstance(analysis.layout, PatchGrid):
        written += write_miou(analysis, samples, sources, run_args, out)
    return written


def write_miou(analysis: Analysis, samples: list, sources: list[Path], run_args: argparse.Namespace,
               out: Path) -> list[Path]:
    """Pseudo-mask mIoU of the images that have an ImageNet-S mask, cropped as the task's evaluation transform."""
    crop = float(getattr(run_args, "eval_crop_ratio", None) or DEFAULT_CROP_RATIO)
    masks = []
    for sample, source in zip(samples, sources):
        size = int(np.asarray(sample.display).shape[0])
        try:
            masks.append(load_mask(source, size, crop))
        except (OSError, ValueError) as error:
            print(f"warning: mask of {source} skipped: {str(error).splitlines()[0]}", file=sys.stderr)
            masks.append(None)
    results, notes = miou_scores(analysis.maps, masks, [str(p) for p in sources])
    for note in notes:
        print(f"note: {note}")
    if not results:
        print("no image with a usable ground-truth mask (ImageNet-S layout): mIoU skipped")
        return []
    (out / "miou.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = miou_table(results)
    (out / "miou.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return [out / "miou.json", out / "miou.md"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("--resume", required=True, type=Path, help="engine checkpoint (checkpoint.pth / best.pth)")
    parser.add_argument("--task", default=None, help="task of the checkpoint (default: its config's 'task')")
    parser.add_argument("--inputs", "--images", dest="inputs", nargs="+", type=Path, required=True,
                        help="input files of the task's format, or folders of them (--images: the same)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a run config.yaml whose keys override the checkpoint's saved config")
    parser.add_argument("--ema", action="store_true", help="analyse the EMA weights")
    parser.add_argument("--llm-path", default=None, help="where the frozen LLM checkpoint is now, if it moved")
    parser.add_argument("--max-inputs", "--max-images", dest="max_inputs", type=int, default=16)
    parser.add_argument("--grid-inputs", "--grid-images", dest="grid_inputs", type=int, default=6,
                        help="inputs drawn in the pictures")
    parser.add_argument("--measures", default=",".join(MEASURES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("analysis_out"))
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: not a mapping of config keys")
        overrides.update(loaded)
    if args.llm_path is not None:
        overrides["llm_path"] = args.llm_path
    return overrides


def main(argv: list[str] | None = None) -> int:
    from common.engine import runner
    from common.engine.errors import EngineError
    from common.task import AnalysisUnavailable, available_tasks, get_task

    args = make_parser().parse_args(argv)
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    try:
        unknown = [m for m in measures if m not in MEASURES]
        if unknown or not measures:
            raise ValueError(f"--measures: choose from {', '.join(MEASURES)}")
        if args.max_inputs < 1 or args.batch_size < 1:
            raise ValueError("--max-inputs and --batch-size must be >= 1")
        name = args.task or task_of_checkpoint(args.resume)
        if name not in available_tasks():
            raise ValueError(f"unknown task {name!r} (built: {', '.join(available_tasks())})")
        task = get_task(name)
        loaded = runner.load_run(task, args.resume, use_ema=args.ema, overrides=_overrides(args))
        paths = expand_inputs(args.inputs)
        if not paths:
            raise ValueError(f"no input files under {', '.join(map(str, args.inputs))}")
        samples, sources = read_samples(task, loaded.args, paths, args.max_inputs)
        if not samples:
            raise ValueError("none of the inputs could be read")
        analysis = analyze_inputs(task, loaded.model, samples, measures, args.batch_size, args.device)
    except AnalysisUnavailable as error:
        print(f"skipped: {error}")
        return 0
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except (ValueError, FileNotFoundError, ImportError, RuntimeError, yaml.YAMLError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for path in write_outputs(analysis, samples, sources, loaded.args, args.out, args.grid_inputs):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
