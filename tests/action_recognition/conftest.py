"""Fixtures for action_recognition: tiny SSv2 folders of PyAV-encoded videos, a tiny LLaMA in Meta format."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from ar_fixtures import write_ssv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))  # the shared LLM-checkpoint writers
from lm_checkpoints import META_HIDDEN, META_PARAMS, VOCAB, meta_state_dict, write_meta  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the cores are shared; restored afterwards for the other areas' tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-layer, dim-64 LLaMA (GQA 4/2 heads) in Meta's ``params.json`` + ``consolidated.00.pth`` format."""
    directory = tmp_path_factory.mktemp("tiny_llama")
    return write_meta(directory, meta_state_dict(META_PARAMS, META_HIDDEN, VOCAB, seed=3), META_PARAMS)


@pytest.fixture(scope="session")
def ssv2_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 training and 4 validation videos (webm and mp4), 3 classes, VideoMAE CSVs with relative paths."""
    return write_ssv2(tmp_path_factory.mktemp("ssv2"))
