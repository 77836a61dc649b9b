"""checkpoint: atomic writes, weights_only-safe contents, strict loading, frozen-LM leak and fingerprint checks."""

from __future__ import annotations

import engine_toy_train as toy
import pytest
import torch
from torch import nn

from common.engine import checkpoint, optim
from common.engine.errors import CheckpointError


def _state(value: float) -> dict:
    return {"format": checkpoint.FORMAT, "version": 1, "epoch": 0, "w": torch.full((4,), value)}


@pytest.mark.parametrize("crash", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_crash_while_saving_leaves_the_previous_checkpoint_valid(tmp_path, monkeypatch, crash):
    path = tmp_path / "checkpoint.pth"
    checkpoint.save(path, _state(1.0))
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip archive")  # a partial write, then the crash
        raise crash

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(type(crash)):
        checkpoint.save(path, _state(2.0))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(checkpoint.load(path)["w"], torch.full((4,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # the temp file is gone too

    checkpoint.save(path, _state(3.0))  # and the next save works
    assert torch.equal(checkpoint.load(path)["w"], torch.full((4,), 3.0))


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pth"
    checkpoint.save(path, _state(1.0))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(path)
    torch.save({"model": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a frozen-lm-vision engine checkpoint"):
        checkpoint.load(tmp_path / "foreign.pth")


def test_values_weights_only_cannot_load_are_refused_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match=r"state\['config'\]\['path'\]: PosixPath"):
        checkpoint.save(tmp_path / "c.pth", {"config": {"path": tmp_path}})
    assert not any(tmp_path.iterdir())


def test_frozen_llm_weights_never_reach_a_checkpoint(monkeypatch):
    model = toy.ToyModel()
    state = checkpoint.trainable_state_dict(model)
    assert "adapter.in_proj.weight" in state and not any(k.startswith("adapter.lm.") for k in state)
    full = nn.Module.state_dict(model)  # simulate a FrozenLM whose exclusion hook failed
    leaked = {**full, "adapter.lm.blocks.0.attn.wq.weight": torch.zeros(1)}
    names = checkpoint.frozen_lm_param_names(model)
    assert names and all(n.startswith("adapter.lm.") for n in names)
    monkeypatch.setattr(model, "state_dict", lambda *a, **k: {**leaked, next(iter(names)): torch.zeros(1)})
    with pytest.raises(CheckpointError, match="frozen LLM weights would be saved: adapter.lm."):
        checkpoint.trainable_state_dict(model)


def _saved(tmp_path, model, optimizer=None):
    state = checkpoint.build_state(model=model, epoch=4, config={"lr": 0.1}, optimizer=optimizer)
    return checkpoint.save(tmp_path / "c.pth", state)


def test_restore_is_strict_about_model_keys_and_the_frozen_block(tmp_path):
    model = toy.ToyModel()
    path = _saved(tmp_path, model)
    other = toy.ToyModel()
    ckpt = checkpoint.restore(path, model=other)
    assert ckpt["epoch"] == 4 and ckpt["config"] == {"lr": 0.1}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))

    with pytest.raises(CheckpointError, match="different frozen LLM block.*random_seed was 0, now 7"):
        checkpoint.restore(path, model=toy.ToyModel(lm_seed=7))
    wider = toy.ToyModel(dim=10)
    with pytest.raises(CheckpointError, match=r"\[model\] does not match the model; shape differs: adapter.in_proj"
                       r".weight \(8, 6\) vs model \(8, 10\), "):
        checkpoint.restore(path, model=wider)
    wider.head = nn.Identity()
    with pytest.raises(CheckpointError, match=r"; unexpected: head.bias, head.weight; shape differs"):
        checkpoint.restore(path, model=wider)


def test_restore_refuses_an_optimizer_built_over_other_parameters(tmp_path):
    model = toy.ToyModel()
    args = {"lr": 1e-3, "weight_decay": 0.05}
    path = _saved(tmp_path, model, optim.build_optimizer(args, model))
    model.head.requires_grad_(False)  # e.g. another freezing choice: the groups no longer line up
    with pytest.raises(CheckpointError, match=r"\[optimizer\]: parameter group 0 differs .*\(not in both: head.bias\)"):
        checkpoint.restore(path, model=model, optimizer=optim.build_optimizer(args, model))


def test_resolve_resume(tmp_path):
    assert checkpoint.resolve_resume("", tmp_path) is None
    assert checkpoint.resolve_resume("auto", tmp_path) is None
    checkpoint.save(tmp_path / checkpoint.LATEST_NAME, _state(0.0))
    assert checkpoint.resolve_resume("auto", tmp_path) == tmp_path / checkpoint.LATEST_NAME
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.resolve_resume(str(tmp_path / "missing.pth"), tmp_path)
