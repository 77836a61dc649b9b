"""Fixtures for action_recognition: tiny SSv2 folders of PyAV-encoded videos, a tiny LLaMA in Meta format."""

from __future__ import annotations

from pathlib import Path

import pytest
from ar_fixtures import write_ssv2


@pytest.fixture(scope="session")
def ssv2_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 training and 4 validation videos (webm and mp4), 3 classes, VideoMAE CSVs with relative paths."""
    return write_ssv2(tmp_path_factory.mktemp("ssv2"))
