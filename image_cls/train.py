"""Train a DeiT ViT with or without a frozen LLM block: ``python -m image_cls.train``.

    python -m image_cls.train --config image_cls/configs/vit_small_llama.yaml --data-path /data/imagenet \\
        --llm-path /ckpt/llama-7b --output-dir runs/vit_small_llama [--key value ...]
    tools/dist_train.sh image_cls.train --config ...          # torchrun, one process per GPU
    python -m image_cls.train --dataset fashion_mnist --model vit_demo_llm --input-size 28 ...   # small real data

The DeiT recipe (facebookresearch/deit ``main.py``, kept by LM4VisualEncoding) on ``common.engine.runner``
(``image_cls.task``): ``--lr`` is the LR of 512 images, scaled by the global batch / 512 for the optimizer
(``--unscale-lr`` to use it as is); Mixup/CutMix with soft-target cross-entropy, else label-smoothing
cross-entropy; repeated augmentation; EMA of the trainable weights only; AMP; ``--compile``. ``OUTPUT_DIR/log.txt``
gets one JSON line per epoch with ``task``, ``test_acc1``, ``test_acc5``, ``test_loss`` (and ``test_ema_*``), the
LR, parameter counts and the number of unreadable images skipped that epoch (``skipped_train_images``,
``skipped_val_images``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from common.engine import runner
from image_cls.options import build_parser
from image_cls.task import TASK

__all__ = ["build_parser", "main", "run"]


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or with ``--eval-only`` evaluate) the configured model; returns ``loop.fit``'s summary."""
    return runner.train_main(TASK, args)


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: parse (``--config`` preset + flags) and train; errors exit with one line."""
    TASK.train(argv)


if __name__ == "__main__":
    run()
