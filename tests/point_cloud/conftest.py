"""Fixtures for point_cloud: ScanObjectNN h5 files, a ModelNet40 folder, a tiny LLaMA checkpoint (Meta format)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from pc_fixtures import write_modelnet, write_scanobjectnn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))  # the shared LLM-checkpoint writers
from lm_checkpoints import META_HIDDEN, META_PARAMS, VOCAB, meta_state_dict, write_meta  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread for these tiny tensors: faster, and with busy cores two threads spin-wait (measured
    40x slower on the 2-core CI machine under load). Restored afterwards for the other areas' tests."""
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
def scanobjectnn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``main_split/`` and ``main_split_nobg/`` with 12 training and 6 test clouds of 96 points per file."""
    return write_scanobjectnn(tmp_path_factory.mktemp("ScanObjectNN"))


@pytest.fixture(scope="session")
def _modelnet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modelnet(tmp_path_factory.mktemp("ModelNet") / "modelnet40_normal_resampled")


@pytest.fixture
def modelnet_root(_modelnet_template: Path, tmp_path: Path) -> Path:
    """A fresh copy (caches get written into it) of a 3-class ModelNet40 folder: 4 + 2 shapes per class, 200
    points each."""
    return Path(shutil.copytree(_modelnet_template, tmp_path / "modelnet40_normal_resampled"))
