"""Train VectorNet / mmTransformer ± a frozen LLM block on Argoverse 1.1 or 2 (see ``motion_forecasting/README.md``).

    python -m motion_forecasting.train --config motion_forecasting/configs/vectornet_av1_llama.yaml \\
        --train-path av1/train --val-path av1/val --map-dir av1/map_files --cache-dir cache/av1 --llm-path /ckpt/llama
"""

from __future__ import annotations

from collections.abc import Sequence

from motion_forecasting.task import TASK


def run(argv: Sequence[str] | None = None) -> None:
    TASK.train(argv)


if __name__ == "__main__":
    run()
