"""Fine-tune METER (± a frozen LLM block) on VQAv2 or Flickr30k retrieval.

    python -m vqa_2d.train --config vqa_2d/configs/vqav2_llama.yaml --data-path /data/vqa_arrow \\
        --clip-path /ckpt/ViT-B-32.pt --text-path /ckpt/roberta-base --tokenizer /ckpt/roberta-base \\
        --llm-path /ckpt/llama-7b --output-dir runs/vqa_2d/vqav2_llama
"""

from __future__ import annotations

from collections.abc import Sequence

from vqa_2d.task import TASK


def run(argv: Sequence[str] | None = None) -> None:
    TASK.train(argv)


if __name__ == "__main__":
    run()
