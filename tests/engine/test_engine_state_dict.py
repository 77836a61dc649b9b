"""``common.engine.state_dict``: one reader for released weight files (keys, prefixes, the weights_only refusal)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest
import torch

from common.engine.errors import CheckpointError
from common.engine.state_dict import read_state_dict, strip_prefixes


@dataclass
class RunInfo:
    """A class some training scripts pickle next to their weights."""

    epoch: int = 3


def test_the_first_present_key_wins_and_module_prefixes_go(tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"args": argparse.Namespace(lr=1e-3), "base_model": {"module.module.w": torch.ones(2)},
                "model": {"x": torch.zeros(1)}}, path)
    state, key = read_state_dict(path, keys=("base_model", "model"))
    assert key == "base_model" and list(state) == ["w"] and torch.equal(state["w"], torch.ones(2))
    bare = tmp_path / "bare.pth"
    torch.save({"module.w": torch.ones(1)}, bare)
    assert read_state_dict(bare)[0].keys() == {"w"} and read_state_dict(bare)[1] is None
    with pytest.raises(CheckpointError, match="no 'model' state dict; keys"):
        read_state_dict(bare, keys=("model",), allow_bare=False)


def test_a_refused_pickled_class_is_named_in_one_line(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"model": {"w": torch.ones(1)}, "extra": RunInfo()}, path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and f"{__name__}.RunInfo" in message and "not unpickled" in message
    assert "weights_only=False" not in message


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"model": {"w": torch.ones(100)}}, path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {cut}"):
        read_state_dict(cut)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_state_dict(tmp_path / "none.pth")
    torch.save({"model": {"w": "not a tensor"}}, path)
    with pytest.raises(CheckpointError, match="'model' entry 'w' is not a tensor"):
        read_state_dict(path)


def test_strip_prefixes_once_or_all():
    state = {"backbone.encoder.x": 1, "encoder.y": 2, "z": 3}
    assert strip_prefixes(state, ("backbone.", "encoder."), repeat=False) == {"encoder.x": 1, "y": 2, "z": 3}
    assert strip_prefixes(state, ("backbone.", "encoder.")) == {"x": 1, "y": 2, "z": 3}
