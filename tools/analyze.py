"""Information-filtering analysis of a trained model (paper §6): activation maps per stage and pseudo-mask mIoU.

    python -m tools.analyze --task image_cls --resume runs/vit_s/frozen/seed0/checkpoint.pth \\
        --images ImageNetS50/validation [--max-images 16] [--out analysis_out/]

Stages: after the encoder, after in_proj (F_L1), after the LLM attention, after the LLM FFN, after out_proj (F_L2),
plus the CLS->token attention of the encoder's last block and of the LLM block (summed over heads). Measures:
``magnitude`` and ``frequency`` (``tools.analysis.measures``), min-max normalised per image.
Writes ``overlays_<measure>.png`` (rows = images, columns = stages) and, for images that have an ImageNet-S
mask (``<name>.png`` beside the image, or ``<split>-segmentation/<wnid>/<name>.png``), ``miou.json`` and
``miou.md``: pseudo-mask (activation > t, best t in 0.1..0.9 per image) mIoU per stage over images.

Python API (used by the README demo):
    maps = activation_maps(model, images, stages=None, measure="magnitude")   # {stage: (B, H_tok, W_tok)}
    save_overlay_grid(images, maps, "maps.png")
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from tools.analysis.images import Sample, list_images, load_sample
from tools.analysis.maps import activation_maps, build_spec, capture_tokens, maps_from_capture
from tools.analysis.measures import MEASURES
from tools.analysis.overlay import save_overlay_grid
from tools.analysis.pseudo_mask import THRESHOLDS, downsample_mask, pseudo_mask_miou

__all__ = ["activation_maps", "analyze_samples", "main", "miou_table", "save_overlay_grid"]


def analyze_samples(model: torch.nn.Module, samples: list[Sample], task: str = "image_cls",
                    measures: tuple[str, ...] = MEASURES, batch_size: int = 8,
                    device: str | torch.device = "cpu") -> dict[str, dict[str, torch.Tensor]]:
    """Maps of every sample: {measure: {stage: (n, H_tok, W_tok)}} (attention stages repeated per measure)."""
    model = model.to(device)
    out: dict[str, dict[str, list[torch.Tensor]]] = {m: {} for m in measures}
    for start in range(0, len(samples), batch_size):
        batch = torch.stack([s.tensor for s in samples[start:start + batch_size]]).to(device)
        spec = build_spec(model, batch, task)
        capture = capture_tokens(model, batch, spec)
        for measure in measures:
            for name, values in maps_from_capture(capture, spec, measure).items():
                out[measure].setdefault(name, []).append(values)
    return {m: {name: torch.cat(parts) for name, parts in stages.items()} for m, stages in out.items()}


def miou_scores(maps: dict[str, dict[str, torch.Tensor]], samples: list[Sample],
                thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[dict[str, dict], list[str]]:
    """Pseudo-mask mIoU per (measure, stage) over the samples with a non-empty token-grid mask.

    Returns ({"<stage>/<measure>" or "<attention stage>": {miou, n_images, images: [...]}}, notes).
    """
    notes: list[str] = []
    any_map = next(iter(next(iter(maps.values())).values()))
    grid = tuple(any_map.shape[1:])
    if len(grid) != 2:
        raise ValueError("pseudo-mask mIoU needs 2-D token maps (image tasks)")
    chosen, targets, valids = [], [], []
    for index, sample in enumerate(samples):
        if sample.foreground is None:
            continue
        target, valid = downsample_mask(sample.foreground, grid, sample.ignore)
        if not target.any():
            notes.append(f"{sample.path}: no foreground token after downsampling; left out of the mIoU")
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
                "images": [{"image": str(samples[i].path), "iou": iou, "threshold": t}
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


def _parse_floats(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(v) for v in text.split(","))


def main(argv: list[str] | None = None) -> int:
    from tools.analysis.loading import TASK_LOADERS

    parser = argparse.ArgumentParser(prog="python -m tools.analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="image_cls", help=f"task of the checkpoint ({', '.join(TASK_LOADERS)})")
    parser.add_argument("--resume", required=True, type=Path, help="engine checkpoint (checkpoint.pth / best.pth)")
    parser.add_argument("--config", type=Path, default=None, help="run config.yaml (default: the checkpoint's)")
    parser.add_argument("--ema", action="store_true", help="analyse the EMA weights")
    parser.add_argument("--llm-path", default=None, help="where the frozen LLM checkpoint is now, if it moved")
    parser.add_argument("--images", nargs="+", type=Path, required=True, help="image files or folders")
    parser.add_argument("--max-images", type=int, default=16)
    parser.add_argument("--grid-images", type=int, default=6, help="images drawn in the overlay grids")
    parser.add_argument("--measures", default=",".join(MEASURES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--crop-pct", type=float, default=224 / 256, help="eval resize/crop ratio (DeiT 0.875)")
    parser.add_argument("--mean", default=None, help="comma-separated normalisation mean (default: the task's)")
    parser.add_argument("--std", default=None, help="comma-separated normalisation std (default: the task's)")
    parser.add_argument("--out", type=Path, default=Path("analysis_out"))
    args = parser.parse_args(argv)
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    try:
        unknown = [m for m in measures if m not in MEASURES]
        if unknown or not measures:
            raise ValueError(f"--measures: choose from {', '.join(MEASURES)}")
        if args.task not in TASK_LOADERS:
            raise ValueError(f"no checkpoint loader for task {args.task!r} (have: {', '.join(TASK_LOADERS)}); "
                             "use the Python API (tools.analysis) with the task's model")
        loaded = TASK_LOADERS[args.task](args.resume, args.config, args.ema, args.llm_path)
        mean = _parse_floats(args.mean) or loaded.mean
        std = _parse_floats(args.std) or loaded.std
        paths = list_images(args.images, args.max_images)
        if not paths:
            raise ValueError(f"no images under {', '.join(map(str, args.images))}")
        samples = []
        for path in paths:
            try:
                samples.append(load_sample(path, loaded.input_size, loaded.in_chans, args.crop_pct, mean, std))
            except OSError as error:  # unreadable/corrupt image: skip it, keep going
                warnings.warn(f"skipping {path}: {error}", stacklevel=1)
        if not samples:
            raise ValueError("none of the images could be read")
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    maps = analyze_samples(loaded.model, samples, args.task, measures, args.batch_size, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    shown = samples[: args.grid_images]
    display = np.stack([s.display for s in shown])
    for measure, stages in maps.items():
        path = save_overlay_grid(display, {k: v[: len(shown)] for k, v in stages.items()},
                                 args.out / f"overlays_{measure}.png", titles=[s.path.name for s in shown])
        print(f"wrote {path}")
    if next(iter(maps[measures[0]].values())).dim() == 3:  # 2-D token grids (images)
        results, notes = miou_scores(maps, samples)
        for note in notes:
            print(f"note: {note}")
        if results:
            (args.out / "miou.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            table = miou_table(results)
            (args.out / "miou.md").write_text(table + "\n", encoding="utf-8")
            print(table)
            print(f"wrote {args.out / 'miou.json'} and {args.out / 'miou.md'}")
        else:
            print("no image with a usable ground-truth mask (ImageNet-S layout): mIoU skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
