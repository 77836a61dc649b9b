"""Fixtures of the tools tests (the models live in analysis_models.py)."""

import pytest
from analysis_models import make_vit


@pytest.fixture
def vit_factory():
    return make_vit
