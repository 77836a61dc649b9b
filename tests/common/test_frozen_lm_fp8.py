"""FP8 frozen block (``LLMSpec.fp8``): quantisation, the CPU emulation vs torch._scaled_mm, error bounds, refusals.

Error bounds, derived and then measured (random data, relative Frobenius error vs fp32):
- One GEMM. Round-to-nearest with m mantissa bits has an RMS relative error of ~2^-m / sqrt(12) / ln 2 per
  element (log-uniform mantissas): 2.6 % for e4m3 (3 bits), 5.2 % for e5m2 (2 bits). Forward ``x W^T`` quantises
  two e4m3 operands: sqrt(2) * 2.6 = 3.7 % (measured 3.7-3.8 % over shapes and seeds; the issue reports ~3.8 % on
  an H200); input gradient ``dy W``: e5m2 and e4m3, sqrt(5.2^2 + 2.6^2) = 5.8 % (measured 5.7-6.0 %).
  Bounds: 4.5 % and 7 %, and at least 2 % / 4 % (so the test fails if nothing is quantised).
- One block (the tiny LLaMA fixture: 4 GEMMs in sequence, SwiGLU's product, attention): measured 8.4-8.6 % on
  the block's update (output - input) and 12.5-13.3 % on the input gradient over 4 seeds. Bounds: 11 % / 17 %.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from common.frozen_lm import FrozenLM, LLMAdapter, LLMSpec, LMConfig, check_fingerprints, lm_fingerprints
from common.frozen_lm.fp8 import E4M3, E5M2, fp8_available, fp8_linear, quantize, quantize_weight

pytestmark = pytest.mark.skipif(not fp8_available(), reason="this torch has no float8 dtypes / torch._scaled_mm")

TINY = LMConfig("llama", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, ffn_hidden=128, norm_eps=1e-5)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def run(lm, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(update = output - input, input gradient - incoming gradient): the block's own contribution."""
    xi = x.clone().requires_grad_()
    y = lm(xi)
    y.backward(grad)
    return (y - x).detach(), xi.grad - grad


def test_quantize_uses_power_of_two_scales_and_saturates():
    t = torch.tensor([0.0, 1e-3, -0.3, 5.0, -700.0])
    q, scale = quantize(t, E4M3)
    assert q.dtype == E4M3 and scale.dtype == torch.float32
    assert torch.log2(scale).item() == round(torch.log2(scale).item())  # a power of two
    assert q.float().abs().max() <= 448 and torch.isfinite(q.float()).all()
    assert (q.float() * scale).abs().max() == pytest.approx(700.0, rel=2**-4)
    # exact dequantisation in bf16: pow2 scale, 3-bit mantissa values
    assert torch.equal((q.float() * scale).bfloat16().float(), q.float() * scale)
    zeros_q, zeros_scale = quantize(torch.zeros(4, 4), E5M2)
    assert torch.isfinite(zeros_scale) and zeros_scale > 0 and zeros_q.float().abs().sum() == 0
    big = torch.full((3,), 1e30)  # beyond e4m3 range before scaling: still finite after
    assert torch.isfinite(quantize(big, E4M3)[0].float()).all()


def test_cpu_emulation_matches_torch_scaled_mm():
    """The emulation is the same quantised GEMM as torch._scaled_mm (which runs on the CPU, ~1000x slower)."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(32, 48, generator=g), torch.randn(64, 48, generator=g) * 0.02
    gy = torch.randn(32, 64, generator=g)
    w8, w8_t, w_scale = quantize_weight(w)
    x8, x_scale = quantize(x, E4M3)
    g8, g_scale = quantize(gy, E5M2)
    try:
        fwd = torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=torch.float32)
        bwd = torch._scaled_mm(g8, w8_t.t(), scale_a=g_scale, scale_b=w_scale, out_dtype=torch.float32)
    except (RuntimeError, NotImplementedError) as e:
        pytest.skip(f"torch._scaled_mm does not run on the CPU in torch {torch.__version__}: {e}")
    xr = x.clone().requires_grad_()
    y = fp8_linear(xr, w8, w8_t, w_scale)
    y.backward(gy)
    assert torch.allclose(y, fwd, rtol=1e-5, atol=1e-6)
    assert torch.allclose(xr.grad, bwd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 64, 96), (300, 512, 256)])
def test_fp8_linear_error_bounds(shape):
    m, k, n = shape
    g = torch.Generator().manual_seed(1)
    w, gy = torch.randn(n, k, generator=g) * 0.02, torch.randn(m, n, generator=g)
    x = torch.randn(m, k, generator=g).requires_grad_()
    F.linear(x, w).backward(gy)
    ref_grad, x.grad = x.grad, None
    y = fp8_linear(x, *quantize_weight(w))
    y.backward(gy)
    assert 0.02 < rel_err(y, F.linear(x, w)) < 0.045
    assert 0.04 < rel_err(x.grad, ref_grad) < 0.07


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_fp8_block_within_bound_of_the_same_block_without_fp8(meta_dir, dtype):
    g = torch.Generator().manual_seed(0)
    x, grad = torch.randn(2, 20, 64, generator=g), torch.randn(2, 20, 64, generator=g)
    base = run(FrozenLM.from_checkpoint(meta_dir, final_norm="none", dtype=dtype), x, grad)
    fp8 = FrozenLM.from_checkpoint(meta_dir, final_norm="none", dtype=dtype, fp8=True)
    quant = run(fp8, x, grad)
    assert 0.03 < rel_err(quant[0], base[0]) < 0.11
    assert 0.03 < rel_err(quant[1], base[1]) < 0.17
    assert fp8(x).dtype == torch.float32 and fp8(x.bfloat16()).dtype == torch.bfloat16


def test_fp8_weights_are_quantised_once_frozen_and_not_saved():
    lm = FrozenLM.from_config(TINY, n_blocks=2, seed=1, dtype="bfloat16", fp8=True)
    ref = FrozenLM.from_config(TINY, n_blocks=2, seed=1, dtype="bfloat16")
    assert lm.fp8 and not ref.fp8 and lm.compute_dtype == torch.bfloat16
    qkv, ref_qkv = lm.blocks[1].attn.qkv, ref.blocks[1].attn.qkv
    w8, w8_t = qkv.weight.view(E4M3), qkv.weight_t.view(E4M3)  # stored as uint8 bit patterns
    assert qkv.weight.dtype == torch.uint8 and torch.equal(w8_t.float(), w8.float().t())
    assert rel_err(w8.float() * qkv.weight_scale, ref_qkv.weight) < 0.04
    assert lm.blocks[0].attn_norm.weight.dtype == torch.bfloat16  # norms stay in the compute dtype
    assert lm.state_dict() == {} and not any(p.requires_grad for p in lm.parameters())
    gemm_params = sum(p.numel() for n, p in ref.named_parameters() if n.endswith(("qkv.weight", "out.weight",
                                                                                  "gate_up.weight", "down.weight")))
    fp8_bytes = sum(p.numel() * p.element_size() for p in lm.parameters() if p.dtype == torch.uint8)
    assert fp8_bytes == 2 * gemm_params  # two layouts, one byte each
    x = torch.randn(2, 5, 64, requires_grad=True)
    lm(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and all(p.grad is None for p in lm.parameters())
    assert lm.fingerprint["fp8"] is True and "fp8" not in ref.fingerprint
    twin = copy.deepcopy(lm)
    assert twin.fp8 and torch.equal(twin(x), lm(x))


def test_fp8_with_activation_checkpointing_gives_the_same_gradient():
    lm = FrozenLM.from_config(TINY, seed=2, fp8=True)
    x = torch.randn(2, 7, 64, requires_grad=True)
    lm(x).sum().backward()
    plain, x.grad = x.grad.clone(), None
    lm.grad_checkpointing = True
    lm(x).sum().backward()
    assert torch.equal(x.grad, plain)  # per-step dynamic scales are recomputed identically


def test_fp8_from_spec_and_refusals(meta_dir):
    adapter = LLMAdapter.from_spec(32, LLMSpec(variant="frozen", path=str(meta_dir), fp8=True, dtype="bfloat16"))
    assert adapter.lm.fp8 and adapter.lm.compute_dtype == torch.bfloat16
    assert LLMAdapter.from_spec(32, LLMSpec(variant="random_frozen", path=str(meta_dir), fp8=True)).lm.fp8
    for variant in ("finetune", "random_trainable"):
        with pytest.raises(ValueError, match="llm_fp8=True needs a frozen LLM block"):
            LLMSpec(variant=variant, path=str(meta_dir), fp8=True)
    with pytest.raises(ValueError, match="fp8=True needs a frozen block"):
        FrozenLM.from_checkpoint(meta_dir, trainable=True, fp8=True)
    with pytest.raises(ValueError, match="fp8=True needs a frozen block"):
        FrozenLM.from_config(TINY, trainable=True, fp8=True)
    lm = FrozenLM.from_config(TINY, fp8=True)
    with pytest.raises(ValueError, match="cannot be trainable"):
        lm.trainable = True
    with pytest.raises(RuntimeError, match="cannot re-initialise"):
        lm.init_random(0)
    with pytest.raises(RuntimeError, match="was cast to another dtype"):
        copy.deepcopy(lm).to(torch.bfloat16)(torch.randn(1, 3, 64, dtype=torch.bfloat16))


def test_resume_refuses_switching_fp8(meta_dir):
    saved = lm_fingerprints(LLMAdapter.from_spec(8, LLMSpec(variant="frozen", path=str(meta_dir))))
    check_fingerprints(saved, LLMAdapter.from_spec(8, LLMSpec(variant="frozen", path=str(meta_dir), dtype="bfloat16")))
    with pytest.raises(ValueError, match="fp8 was None, now True"):
        check_fingerprints(saved, LLMAdapter.from_spec(8, LLMSpec(variant="frozen", path=str(meta_dir), fp8=True)))


def test_parameter_counts_do_not_double_with_two_fp8_layouts():
    from common.engine.logging import count_parameters

    plain = count_parameters(LLMAdapter(32, FrozenLM.from_config(TINY, seed=0)))
    fp8 = LLMAdapter(32, FrozenLM.from_config(TINY, seed=0, fp8=True))
    assert count_parameters(fp8) == plain and plain["n_frozen"] == TINY.params_per_layer()
    assert count_parameters(copy.deepcopy(fp8).to("cpu")) == plain  # the rule survives copies and moves
