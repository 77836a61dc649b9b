"""Only the requested layer's tensors are read: exact read counters, and checkpoints whose other layers are
corrupt (NaN bytes on disk, or garbage of the wrong dtype/shape) still load the requested layer unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest
import torch
from lm_checkpoints import META_PARAMS, nan_fill_tensor_bytes, write_gguf, write_meta
from safetensors.torch import load_file, save_file

from common.frozen_lm import CheckpointError, FrozenLM

LAST = 2  # the tiny Meta-derived checkpoints have 3 layers


def copy_checkpoint(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return dst


def stored_tensors_except_last_layer(path: Path) -> tuple[list[Path], list]:
    """(weight files, the stored arrays of every tensor that does not belong to the last layer)."""
    if path.suffix == ".gguf":
        reader = gguf.GGUFReader(path)
        return [path], [t.data.copy() for t in reader.tensors if not t.name.startswith(f"blk.{LAST}.")]
    if (path / "params.json").is_file():
        files = sorted(path.glob("consolidated.*.pth"))
        states = [torch.load(f, weights_only=True) for f in files]
        keep = f"layers.{LAST}."
    else:
        files = sorted(path.glob("*.safetensors"))
        states = [load_file(f) for f in files]
        keep = f"model.layers.{LAST}."
    return files, [t.numpy() for s in states for k, t in s.items() if not k.startswith(keep)]


@pytest.mark.parametrize("name", ["meta_dir", "meta_sharded_dir", "hf_from_meta", "gguf_from_meta"])
def test_nan_filled_other_layers_do_not_matter(name, request, tmp_path):
    ckpt = request.getfixturevalue(name)
    src = getattr(ckpt, "path", ckpt)
    x = torch.randn(2, 8, 64)
    clean = FrozenLM.from_checkpoint(src, layers=[-1])
    corrupt_path = copy_checkpoint(src, tmp_path)
    files, others = stored_tensors_except_last_layer(src)
    nan_fill_tensor_bytes([corrupt_path / f.name if corrupt_path.is_dir() else corrupt_path for f in files], others)

    lm = FrozenLM.from_checkpoint(corrupt_path, layers=[-1])
    with torch.no_grad():
        assert torch.equal(lm(x), clean(x))
    assert lm.fingerprint["sha256"] == clean.fingerprint["sha256"]
    # exactly the 9 tensors of one llama block were read, all fp32 in these files
    assert lm.load_stats == {"tensors_read": 9, "bytes_read": lm.config.params_per_layer() * 4}
    # the corruption is real: a corrupted layer, if requested, is garbage
    with torch.no_grad():
        assert torch.isnan(FrozenLM.from_checkpoint(corrupt_path, layers=[0])(x)).all()


def test_meta_with_garbage_layers_loads_the_requested_one(tmp_path, meta_state, meta_dir):
    garbage = {k: (torch.arange(3, dtype=torch.int8) if k.startswith(("layers.0.", "layers.1.")) else v)
               for k, v in meta_state.items()}
    path = write_meta(tmp_path / "garbage", garbage, META_PARAMS)
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        assert torch.equal(FrozenLM.from_checkpoint(path, [-1])(x), FrozenLM.from_checkpoint(meta_dir, [-1])(x))
    with pytest.raises(CheckpointError, match=r"'layers\.1\.attention\.wk\.weight'.*has dtype int8"):
        FrozenLM.from_checkpoint(path, [1])


def test_safetensors_with_garbage_layers_loads_the_requested_one(tmp_path, hf_llama_mha):
    state = {k: (torch.full((2, 3), 7, dtype=torch.int32) if k.startswith("model.layers.0.") else v.contiguous())
             for k, v in hf_llama_mha.model.state_dict().items()}
    path = tmp_path / "garbage"
    path.mkdir()
    shutil.copy2(hf_llama_mha.path / "config.json", path / "config.json")
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        assert torch.equal(FrozenLM.from_checkpoint(path, [1])(x), FrozenLM.from_checkpoint(hf_llama_mha.path, [1])(x))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0\..*has dtype I32"):
        FrozenLM.from_checkpoint(path, [0])


def test_gguf_with_garbage_layers_loads_the_requested_one(tmp_path, hf_from_meta, gguf_from_meta):
    path = write_gguf(tmp_path / "garbage.gguf", hf_from_meta.model, {0: "garbage", 1: "garbage"})
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        assert torch.equal(FrozenLM.from_checkpoint(path, [-1])(x), FrozenLM.from_checkpoint(gguf_from_meta, [-1])(x))
    with pytest.raises(CheckpointError, match=r"garbage\.gguf: tensor 'blk\.0\..*has dtype I32"):
        FrozenLM.from_checkpoint(path, [0])


def test_sharded_hf_opens_only_the_shards_of_the_requested_layer(hf_from_meta):
    index = json.loads((hf_from_meta.path / "model.safetensors.index.json").read_text())
    needed = {f for k, f in index["weight_map"].items() if k.startswith(f"model.layers.{LAST}.")}
    from common.frozen_lm import open_checkpoint

    with open_checkpoint(hf_from_meta.path) as reader:
        reader.read_layer(LAST)
        opened = {p.name for p in reader._handles}
    assert opened == needed and len(needed) < len(set(index["weight_map"].values()))
