"""Pictures: heatmap overlays of token maps on the input images (rows = images, columns = stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_display(images: Any, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> np.ndarray:
    """Images as (B, H, W, 3) floats in [0, 1].

    Accepts a tensor (B, C, H, W) or video (B, C, T, H, W) (middle frame shown), or an array (B, H, W[, C]).
    A tensor is un-normalised with ``mean``/``std`` when given, else min-max scaled per image if outside [0, 1].
    """
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        if x.dim() == 5:
            x = x[:, :, x.shape[2] // 2]
        if x.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W) or (B, C, T, H, W), got {tuple(images.shape)}")
        if mean is not None and std is not None:
            x = x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
        elif x.min() < 0 or x.max() > 1:
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
        array = x.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    else:
        array = np.asarray(images, dtype=np.float32)
        if array.max() > 1.0:
            array = array / 255.0
        if array.ndim == 3:
            array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def upsample(map_: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(h, w) token map -> (H, W) bilinear; a (T, h, w) tubelet map shows its middle time slice."""
    values = torch.as_tensor(map_).detach().float().cpu()
    if values.dim() == 3:
        values = values[values.shape[0] // 2]
    return F.interpolate(values[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def save_overlay_grid(images: Any, maps: dict[str, torch.Tensor], path: str | Path, alpha: float = 0.5,
                      cmap: str = "jet", mean: tuple[float, ...] | None = None,
                      std: tuple[float, ...] | None = None, titles: list[str] | None = None) -> Path:
    """Write a PNG grid: one row per image, the input then one heatmap overlay per ``maps`` entry.

    Args:
        images: (B, C, H, W) tensor, (B, C, T, H, W) video tensor, or (B, H, W[, C]) array.
        maps: name -> (B, h, w) (or (B, T, h, w)) values in [0, 1], e.g. from ``activation_maps``.
        path: PNG file to write (parent folders are created).
        titles: optional row labels (e.g. file names).
    """
    display = to_display(images, mean, std)
    batch = display.shape[0]
    for name, values in maps.items():
        if values.shape[0] != batch:
            raise ValueError(f"map {name!r} has {values.shape[0]} images, the grid has {batch}")
    plt = _pyplot()
    columns = 1 + len(maps)
    fig, axes = plt.subplots(batch, columns, figsize=(1.9 * columns, 1.9 * batch + 0.3), squeeze=False)
    height, width = display.shape[1:3]
    for row in range(batch):
        axes[row, 0].imshow(display[row])
        if titles:
            axes[row, 0].set_ylabel(titles[row], fontsize=6)
        for column, values in enumerate(maps.values(), start=1):
            axes[row, column].imshow(display[row])
            axes[row, column].imshow(upsample(values[row], (height, width)), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    for column, name in enumerate(["input", *maps], start=0):
        axes[0, column].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, plt, path)


def save_video_grid(frames: Any, maps: dict[str, torch.Tensor], path: str | Path, title: str | None = None,
                    cmap: str = "jet") -> Path:
    """One video's tokens per frame: one row per token time step (a tubelet of ``T / T_tok`` frames), the middle
    frame of that tubelet then one overlay per ``maps`` entry.

    Args:
        frames: (T, H, W, 3) display frames (floats in [0, 1] or uint8) or a (C, T, H, W) tensor.
        maps: name -> (T_tok, h, w) values in [0, 1] (one video's maps from ``activation_maps``).
    """
    if isinstance(frames, torch.Tensor) and frames.dim() == 4 and frames.shape[0] in (1, 3):
        frames = frames.permute(1, 2, 3, 0)  # (C, T, H, W) -> (T, H, W, C)
    video = to_display(frames)
    steps = {values.shape[0] for values in maps.values()}
    if len(steps) != 1:
        raise ValueError(f"maps disagree on the number of token time steps: {sorted(steps)}")
    (t_tok,) = steps
    per_step = video.shape[0] / t_tok
    picked = [min(video.shape[0] - 1, int(per_step * t + per_step / 2)) for t in range(t_tok)]
    titles = [f"{title + ' ' if title else ''}frame {i}" for i in picked]
    return save_overlay_grid(video[picked], {name: torch.as_tensor(v) for name, v in maps.items()}, path,
                             cmap=cmap, titles=titles)


def save_point_grid(positions: torch.Tensor, maps: dict[str, torch.Tensor], path: str | Path,
                    points: torch.Tensor | list | None = None, cmap: str = "jet",
                    titles: list[str] | None = None, up_axis: int | None = 1) -> Path:
    """Point-cloud counterpart: group centres (B, G, 3) drawn in 3-D, coloured by each map (B, G) in [0, 1].

    ``points`` ((B, P, 3) or a list of (P_i, 3)), if given, is drawn in light grey underneath (the input cloud).
    ``up_axis``: the coordinate drawn vertically (1: y, ModelNet / ScanObjectNN; 2: z, ScanNet), or None for a
    top-down 2-D picture in x, y (planar scenes such as driving maps). Rows = clouds, columns = stages; ``titles``
    label the rows.
    """
    positions = torch.as_tensor(positions).detach().float().cpu()
    axes = (0, 1) if up_axis is None else tuple(a for a in (0, 1, 2) if a != up_axis) + (up_axis,)
    plt = _pyplot()
    batch, columns = positions.shape[0], max(1, len(maps))
    fig = plt.figure(figsize=(2.2 * columns, 2.2 * batch))
    for row in range(batch):
        cloud = None if points is None else torch.as_tensor(points[row]).detach().float().cpu()
        for column, (name, values) in enumerate(maps.items()):
            index = row * columns + column + 1
            ax = fig.add_subplot(batch, columns, index) if up_axis is None else \
                fig.add_subplot(batch, columns, index, projection="3d")
            extra = {} if up_axis is None else {"depthshade": False}
            if cloud is not None:
                ax.scatter(*(cloud[:, a] for a in axes), s=0.3, c="0.8", **extra)
            ax.scatter(*(positions[row, :, a] for a in axes), s=10, c=torch.as_tensor(values[row]).float().cpu(),
                       cmap=cmap, vmin=0, vmax=1, **extra)
            if up_axis is None:
                ax.set_aspect("equal", adjustable="datalim")
            else:
                ax.view_init(elev=20, azim=-60)
                ax.set_box_aspect(None, zoom=1.4)
                ax.set_aspect("equal")  # true proportions: a room or a chair is not stretched to a cube
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, fontsize=7, y=1.0 if up_axis is None else 0.9)  # 3-D titles clip
            if column == 0 and titles:
                label = ax.text if up_axis is None else ax.text2D  # 3-D axes place 2-D text with text2D
                label(0.0, 0.0, titles[row], transform=ax.transAxes, fontsize=6)
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    """Tighten, write the PNG (creating its folder) and close the figure."""
    fig.tight_layout(pad=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
