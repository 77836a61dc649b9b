"""One PNG per scene: lane pieces, observed histories, the target's ground truth and the K predicted
trajectories with their probabilities (target frame, metres).

    python -m motion_forecasting.visualize --resume runs/x/best.pth --split-path av2/val --out vis/ --num 20
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.engine import loop, runner

from .data.dataset import SkipCounts
from .predict import Prediction, add_run_args, predict, split_loader
from .task import TASK


def draw(pred: Prediction, path: str | Path) -> Path:
    """Write the PNG of one scene's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = pred.sample
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    for vec, mask in zip(s["lane_vec"], s["lane_vec_mask"]):
        if mask.any():
            v = vec[mask]
            ax.plot(np.r_[v[:, 0], v[-1, 2]], np.r_[v[:, 1], v[-1, 3]], color="0.75", lw=1, zorder=1)
    for a, (vec, mask) in enumerate(zip(s["agent_vec"], s["agent_vec_mask"])):
        if a and mask.any():
            v = vec[mask]
            ax.plot(v[:, 2], v[:, 3], color="tab:blue", lw=1, alpha=0.6, zorder=2)
    hist = s["history"]
    ax.plot(hist[:, 0], hist[:, 1], color="tab:orange", lw=2.5, label="target history", zorder=4)
    if s["future_mask"].any():
        fut = s["future"][s["future_mask"]]
        ax.plot(fut[:, 0], fut[:, 1], color="tab:red", lw=2.5, label="ground truth", zorder=5)
    for k in np.argsort(-pred.probs):
        t = pred.traj[k]
        ax.plot(t[:, 0], t[:, 1], color="tab:green", lw=1.5, alpha=0.4 + 0.6 * float(pred.probs[k]), zorder=3)
        ax.annotate(f"{pred.probs[k]:.2f}", t[-1], fontsize=8, color="darkgreen")
    ax.plot([], [], color="tab:green", label=f"{len(pred.probs)} predictions (probability at the end)")
    ax.set_aspect("equal")
    ax.set_title(f"{pred.scene_id}", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("m (target frame, x = heading)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = add_run_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--out", default="vis", help="output folder (one <scene id>.png each)")
    parser.add_argument("--num", type=int, default=10, help="scenes to draw")
    return parser


def main(opts: argparse.Namespace) -> list[Path]:
    run = runner.load_run(TASK, opts.resume, overrides={"llm_path": opts.llm_path, "map_dir": opts.map_dir})
    args = run.args
    args.cache_dir, args.num_workers, args.pin_mem = None, 0, False
    dataset, loader = split_loader(args, opts.split_path, SkipCounts())
    written = [draw(p, Path(opts.out) / f"{p.scene_id}.png") for p in predict(run.model, dataset, loader, opts.num)]
    print(f"wrote {len(written)} PNGs to {opts.out}")
    return written


def run(argv: Sequence[str] | None = None) -> None:
    loop.run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    run()
