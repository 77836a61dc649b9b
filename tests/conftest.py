"""Shared test settings: deterministic, one intra-op thread, no network; the tiny LLaMA checkpoint every task uses."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "common"))  # the shared LLM-checkpoint writers
from lm_checkpoints import META_HIDDEN, META_PARAMS, VOCAB, meta_state_dict, write_meta  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed 0 and one intra-op thread per test: the suite is many tiny ops, for which a second OpenMP thread costs
    more than it gains on 2 cores (and spin-waits badly when the cores are busy). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-layer, dim-64 LLaMA (GQA 4/2 heads) in Meta's ``params.json`` + ``consolidated.00.pth`` format."""
    directory = tmp_path_factory.mktemp("tiny_llama")
    return write_meta(directory, meta_state_dict(META_PARAMS, META_HIDDEN, VOCAB, seed=3), META_PARAMS)
