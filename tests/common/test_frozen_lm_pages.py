"""Loading a block gives back the mapped pages of each stored tensor once it is copied (``formats/pages.py``):
the kernel really drops them, data stays readable, anonymous memory is never touched, and every reader's
mapped tensors qualify; ``Block.load_tensors`` stays strict when fed one tensor at a time."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.frozen_lm import FrozenLM
from common.frozen_lm.formats import base, meta, pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise / /proc/self/maps: Linux")
MIB = 1 << 20


def _resident_mib(array: np.ndarray) -> float:
    """Resident MiB of this process's mapping that holds ``array`` (Rss of its /proc/self/smaps entry)."""
    address, current = array.ctypes.data, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(x, 16) for x in head.split("-"))
            current = low <= address < high
        elif current and head == "Rss:":
            return int(line.split()[1]) / 1024
    raise AssertionError("mapping not found")


def test_released_file_pages_leave_the_resident_set_and_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 256, 16 * MIB, dtype=np.uint8)
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    assert int(mapped.sum()) == int(data.sum())  # every page touched
    assert _resident_mib(mapped) > 15
    window = mapped[1000:8 * MIB + 1000]  # not page-aligned: only the pages wholly inside are dropped
    released = pages.release_file_pages(window)
    assert released == 8 * MIB - mmap.PAGESIZE
    assert 7 < _resident_mib(mapped) < 9
    assert np.array_equal(mapped, data)  # read again from the file


def test_anonymous_memory_is_never_released() -> None:
    heap = np.arange(4 * MIB, dtype=np.uint8)
    before = heap.copy()
    assert pages.release_file_pages(heap) == 0
    assert np.array_equal(heap, before)
    assert pages.release_file_pages(memoryview(torch.ones(MIB).numpy())) == 0


@pytest.mark.parametrize("name", ["meta_dir", "meta_sharded_dir", "hf_from_meta", "gguf_from_meta"])
def test_every_reader_releases_its_weights_after_copying(name: str, request, monkeypatch) -> None:
    ckpt = request.getfixturevalue(name)
    released: list[int] = []

    def spy(buffer) -> int:
        n = pages.release_file_pages(buffer)
        released.append(n)
        return n

    monkeypatch.setattr(base, "release_file_pages", spy)
    monkeypatch.setattr(meta, "release_file_pages", spy)
    lm = FrozenLM.from_checkpoint(getattr(ckpt, "path", ckpt), layers=[-1])
    weights = [t for name, t in lm.blocks[0].named_parameters() if name.endswith("weight") and t.dim() == 2]
    pieces = 2 if name == "meta_sharded_dir" else 1
    assert len(released) == 9 * pieces  # one call per stored tensor (per shard piece)
    stored = sum(t.numel() * 4 for t in weights)  # fp32 on disk in these fixtures
    assert stored - 2 * 7 * pieces * mmap.PAGESIZE <= sum(released) <= stored
    assert torch.isfinite(lm(torch.randn(1, 4, lm.config.dim))).all()


def test_load_tensors_one_at_a_time_is_strict() -> None:
    from common.frozen_lm import LMConfig

    cfg = LMConfig("llama", dim=32, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=8, ffn_hidden=64, norm_eps=1e-5)
    block = FrozenLM.from_config(cfg, seed=0).blocks[0]
    tensors = {name: torch.full(shape, float(i)) for i, (name, shape) in enumerate(cfg.layer_tensor_shapes().items())}
    block.load_tensors(iter(tensors.items()))
    assert torch.equal(block.attn.qkv.weight[32:48], tensors["attn.k.weight"])  # GQA: 16 rows after q's 32
    with pytest.raises(ValueError, match="missing"):
        block.load_tensors(iter(list(tensors.items())[:-1]))
    with pytest.raises(ValueError, match="unexpected repeated 'attn.q.weight'"):
        block.load_tensors(iter([("attn.q.weight", tensors["attn.q.weight"])] * 2))
    with pytest.raises(ValueError, match=r"attn.k.weight: shape \(8, 32\), the block expects \(16, 32\)"):
        block.load_tensors({**tensors, "attn.k.weight": torch.zeros(8, 32)})
