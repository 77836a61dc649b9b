"""Fixtures for point_cloud: ScanObjectNN h5 files, a ModelNet40 folder, a tiny LLaMA checkpoint (Meta format)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pc_fixtures import write_modelnet, write_scanobjectnn


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
