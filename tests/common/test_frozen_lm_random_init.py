"""The random-block initialisations (``LLMSpec.random_init`` / ``--llm-random-init``): the frameworks' N(0, 0.02),
PyTorch's Linear default and scale-matched to the pretrained tensors; what each does to the block's update."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from common.frozen_lm import FrozenLM, LLMAdapter, LLMSpec, add_llm_args
from common.frozen_lm.formats import open_checkpoint, read_lm_config
from common.frozen_lm.model import RANDOM_INITS, pretrained_tensor_stats


def _random(path, init: str, seed: int = 3, layers=(-1,)) -> FrozenLM:
    return LLMAdapter.from_spec(16, LLMSpec(variant="random_frozen", path=str(path), layers=layers, seed=seed,
                                            random_init=init)).lm


def _pretrained_layer(path, index: int) -> dict[str, torch.Tensor]:
    with open_checkpoint(path) as reader:
        return {name: t.float().clone() for name, t in reader.iter_layer(index)}


def test_normal_is_the_frameworks_init_and_unchanged(hf_from_meta):
    lm = _random(hf_from_meta.path, "normal")
    cfg = read_lm_config(hf_from_meta.path)
    # Same draws as before the choice existed: one N(0, 0.02) generator over the parameters in order.
    generator = torch.Generator().manual_seed(3)
    for name, param in lm.named_parameters():
        if param.ndim == 2:
            expected = torch.empty(param.shape).normal_(0.0, 0.02, generator=generator)
            assert torch.equal(param, expected), name
        else:
            assert torch.all(param == 1.0), name
    assert "random_init" not in lm.fingerprint  # runs saved before the choice resume unchanged
    assert lm.config == cfg


def test_torch_init_is_pytorchs_linear_default(hf_qwen2):
    lm = _random(hf_qwen2.path, "torch")
    block = lm.blocks[0]
    for module in (block.attn.qkv, block.attn.out, block.ffn.gate_up, block.ffn.down):
        bound = 1.0 / math.sqrt(module.weight.shape[1])
        assert module.weight.abs().max() <= bound
        assert module.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)  # U(-b, b): std b/sqrt(3)
        if module.bias is not None:  # Qwen2's q/k/v biases: PyTorch's bias rule, same bound
            assert module.bias.abs().max() <= bound and module.bias.abs().max() > bound / 4
    assert torch.all(block.attn_norm.weight == 1.0) and torch.all(block.ffn_norm.weight == 1.0)
    assert lm.fingerprint["random_init"] == "torch"


def test_matched_init_has_each_pretrained_tensors_scale(gguf_from_meta, tiny_llama_dir):
    for path in (gguf_from_meta, tiny_llama_dir):
        lm = _random(path, "matched")
        pretrained = _pretrained_layer(path, read_lm_config(path).n_layers - 1)
        block = lm.blocks[0]
        drawn = dict(zip(("attn.q.weight", "attn.k.weight", "attn.v.weight"),
                         block.attn.qkv.weight.split([pretrained[f"attn.{n}.weight"].shape[0] for n in "qkv"])))
        gate, up = block.ffn.gate_up.weight.chunk(2)
        drawn.update({"attn.out.weight": block.attn.out.weight, "ffn.gate.weight": gate, "ffn.up.weight": up,
                      "ffn.down.weight": block.ffn.down.weight})
        for name, tensor in drawn.items():
            assert tensor.std().item() == pytest.approx(pretrained[name].std().item(), rel=0.1), name
            assert not torch.allclose(tensor, pretrained[name]), name  # drawn, not copied
        for norm in ("attn_norm", "ffn_norm"):
            expected = pretrained[f"{norm}.weight"].mean().item()
            assert torch.allclose(getattr(block, norm).weight, torch.full_like(block.attn_norm.weight, expected))
        assert lm.fingerprint["random_init"] == "matched"
        assert lm.fingerprint["stats_source"]["layers"] == [read_lm_config(path).n_layers - 1]


def test_matched_stats_follow_the_requested_layers(tiny_llama_dir):
    stats, source = pretrained_tensor_stats(tiny_llama_dir, (0, 1))
    layer0, layer1 = _pretrained_layer(tiny_llama_dir, 0), _pretrained_layer(tiny_llama_dir, 1)
    assert source["layers"] == [0, 1] and len(stats) == 2
    assert stats[0]["ffn.down.weight"] == pytest.approx((layer0["ffn.down.weight"].mean().item(),
                                                        layer0["ffn.down.weight"].std().item()))
    assert stats[1]["attn.q.weight"][1] == pytest.approx(layer1["attn.q.weight"].std().item())
    lm = _random(tiny_llama_dir, "matched", layers=(0, 1))
    assert len(lm.blocks) == 2


def test_inits_are_seeded_and_differ_from_each_other(tiny_llama_dir):
    weights = {init: _random(tiny_llama_dir, init).blocks[0].ffn.down.weight for init in RANDOM_INITS}
    for init in RANDOM_INITS:
        assert torch.equal(_random(tiny_llama_dir, init).blocks[0].ffn.down.weight, weights[init])
        assert not torch.equal(_random(tiny_llama_dir, init, seed=4).blocks[0].ffn.down.weight, weights[init])
    assert len({w.std().item() for w in weights.values()}) == 3


def test_what_each_init_does_to_the_blocks_update(tiny_llama_dir):
    """|block(x) - x| / |x|: the N(0, 0.02) block is near identity, the scale-matched one moves x like the
    pretrained block does (same order of magnitude)."""
    x = torch.randn(4, 10, read_lm_config(tiny_llama_dir).dim)

    def update(lm: FrozenLM) -> float:
        with torch.no_grad():
            return ((lm.blocks[0](x) - x).norm() / x.norm()).item()

    pretrained = update(FrozenLM.from_checkpoint(tiny_llama_dir, layers=[-1]))
    normal, matched = update(_random(tiny_llama_dir, "normal")), update(_random(tiny_llama_dir, "matched"))
    assert normal < 0.1 * pretrained
    assert 0.3 * pretrained < matched < 3 * pretrained


def test_spec_and_flag_validation(tiny_llama_dir):
    with pytest.raises(ValueError, match="llm_random_init"):
        LLMSpec(variant="random_frozen", path="/x", random_init="xavier")
    with pytest.raises(ValueError, match="applies to the random_frozen"):
        LLMSpec(variant="frozen", path="/x", random_init="matched")
    parser = argparse.ArgumentParser()
    add_llm_args(parser)
    args = parser.parse_args(["--llm-variant", "random_trainable", "--llm-path", str(tiny_llama_dir),
                              "--llm-random-init", "torch"])
    spec = LLMSpec.from_config(args)
    assert spec.random_init == "torch" and spec.variant == "random_trainable"
    assert parser.parse_args([]).llm_random_init == "normal"
    with pytest.raises(SystemExit):
        parser.parse_args(["--llm-random-init", "xavier"])
    with pytest.raises(ValueError, match="needs the pretrained tensor statistics"):
        FrozenLM.from_config(read_lm_config(tiny_llama_dir), init="matched")
