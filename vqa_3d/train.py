"""Train SQA3D ± a frozen LLM block: ``python -m vqa_3d.train --config vqa_3d/configs/<preset>.yaml ...``."""

from __future__ import annotations

from vqa_3d.task import TASK


def run(argv=None) -> None:
    TASK.train(argv)


if __name__ == "__main__":
    run()
