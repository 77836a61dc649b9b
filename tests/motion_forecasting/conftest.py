"""Fixtures of the motion-forecasting tests: a tiny Argoverse 1 map + splits (real formats), the AV2 sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mf_fixtures import AV2_SAMPLE, write_av1_map, write_av1_split  # noqa: E402


@pytest.fixture(scope="session")
def av1_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``map_files/``, ``train/data`` (12 good + 5 bad CSVs), ``val/data`` (6 CSVs), ``test_obs/data`` (3)."""
    root = tmp_path_factory.mktemp("av1")
    write_av1_map(root / "map_files")
    write_av1_split(root / "train", 12, bad=True)
    write_av1_split(root / "val", 6, first=100)
    write_av1_split(root / "test_obs", 3, first=200, steps=20)
    return root


@pytest.fixture(scope="session")
def av2_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real AV2 scenario in its official layout (``<split>/<id>/``), by symlinks to ../shared (read in place)."""
    if not AV2_SAMPLE.is_dir():
        pytest.skip(f"the AV2 sample is absent ({AV2_SAMPLE}; ../shared is only in the project workspace)")
    split = tmp_path_factory.mktemp("av2") / "val"
    scene = split / "0a1e6f0a-1817-4a98-b02e-db8c9327d151"
    scene.mkdir(parents=True)
    for f in AV2_SAMPLE.iterdir():
        (scene / f.name).symlink_to(f)
    return split
