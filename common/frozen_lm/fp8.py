"""FP8 GEMMs for the frozen block (opt-in, ``LLMSpec.fp8``): weights quantised once, activations per step.

A frozen block never needs weight gradients, so each of its GEMMs runs in FP8 twice per training step:

- forward ``y = x W^T``: ``x`` quantised on the fly to ``float8_e4m3fn``, ``W`` quantised once at load (e4m3);
- input gradient ``dx = dy W``: ``dy`` quantised on the fly to ``float8_e5m2`` (gradients need range more than
  precision, the usual hybrid recipe), same e4m3 ``W``.

Scaling: one scale per tensor (weights: per whole fused weight, e.g. the q/k/v stack), computed from the
tensor's current absolute maximum ("dynamic" scaling: no amax history, nothing to tune, no host sync — the
scale stays a device tensor). Scales are rounded up to a power of two so that the dequantised values
``q * scale`` are exact in bf16/fp16/fp32: the CPU emulation below is then bit-for-bit the same quantisation as
``torch._scaled_mm`` and differs from it only in the summation order. Per-tensor (rather than per-output-channel)
weight scales because the same quantised weight serves the forward GEMM (where output channels are GEMM
columns) and the input-gradient GEMM (where they are the reduction dimension, which a per-channel scale cannot
be factored out of), and because tensor-wise scaling is what ``_scaled_mm`` supports on every FP8 GPU with any
output dtype.

Backends: ``torch._scaled_mm`` on CUDA GPUs with FP8 tensor cores (compute capability >= 8.9) when the GEMM's
reduction and output dimensions are multiples of 16 (cuBLASLt's requirement); otherwise an exact emulation
(dequantise to the compute dtype, then an ordinary GEMM). ``torch._scaled_mm`` also runs on the CPU in recent
torch, but through a reference kernel about 10^3x slower than the emulation, so the CPU always emulates (the
tests check the two agree).

cuBLASLt takes FP8 operands only in the "TN" layout (``mat1`` row-major, ``mat2`` column-major), so each
weight is kept in both layouts: ``weight`` (out, in) for the forward GEMM and ``weight_t`` (in, out) for the
input-gradient GEMM — 2 bytes per parameter in all, as much as bf16 storage.
"""

from __future__ import annotations

import torch

E4M3 = getattr(torch, "float8_e4m3fn", None)
E5M2 = getattr(torch, "float8_e5m2", None)


def fp8_available() -> bool:
    """True when this torch has the float8 dtypes (the FP8 block needs them even for the emulation)."""
    return E4M3 is not None and E5M2 is not None and hasattr(torch, "_scaled_mm")


_CUDA_FP8: dict[int, bool] | None = None  # CUDA device index -> has FP8 tensor cores (filled once, eagerly)


def _cuda_fp8_devices() -> dict[int, bool]:
    # Filled on first use, which is quantize_weight at load time: inside a torch.compile'd forward this is then a
    # plain dict lookup (no device query to trace).
    global _CUDA_FP8
    if _CUDA_FP8 is None:
        _CUDA_FP8 = ({i: torch.cuda.get_device_capability(i) >= (8, 9) for i in range(torch.cuda.device_count())}
                     if torch.cuda.is_available() else {})
    return _CUDA_FP8


def scaled_mm_supported(device: torch.device, k: int, n: int) -> bool:
    """Whether ``torch._scaled_mm`` runs an (M, k) x (k, n) FP8 GEMM natively on ``device``."""
    if device.type != "cuda" or not fp8_available() or k % 16 or n % 16:
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _cuda_fp8_devices().get(index, False)


def backend_name(device: torch.device | str, k: int = 16, n: int = 16) -> str:
    """``"scaled_mm"`` or ``"emulated"``: what an FP8 GEMM of that shape uses on ``device`` (for reports)."""
    return "scaled_mm" if scaled_mm_supported(torch.device(device), k, n) else "emulated"


def pow2_scale(amax: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """fp32 scalar ``2^ceil(log2(amax / fp8_max))``: ``x / scale`` fits in ``fp8_dtype`` (an all-zero tensor gets
    the smallest normal fp32 as amax, so the scale is finite and non-zero)."""
    amax = amax.float().clamp(min=torch.finfo(torch.float32).tiny)
    return torch.exp2(torch.ceil(torch.log2(amax / torch.finfo(fp8_dtype).max)))


def quantize(t: torch.Tensor, fp8_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor dynamic quantisation: ``(q, scale)`` with ``q * scale ~ t``, ``q`` of ``fp8_dtype``.

    Values are clamped to the format's finite range (e4m3fn has no inf: an overflow would become NaN).
    """
    scale = pow2_scale(t.abs().amax(), fp8_dtype)
    fmax = torch.finfo(fp8_dtype).max
    q = (t.float() / scale).clamp(-fmax, fmax).to(fp8_dtype)
    return q, scale


def _mm(a8: torch.Tensor, a_scale: torch.Tensor, b8: torch.Tensor, b_scale: torch.Tensor,
        out_dtype: torch.dtype, b8_colmajor: torch.Tensor) -> torch.Tensor:
    """``(a8 * a_scale) @ (b8 * b_scale)`` for (M, K) ``a8`` and (K, N) ``b8``; ``b8_colmajor`` is the same
    matrix laid out column-major (what ``_scaled_mm`` needs)."""
    if scaled_mm_supported(a8.device, a8.shape[1], b8.shape[1]):
        return torch._scaled_mm(a8, b8_colmajor, scale_a=a_scale, scale_b=b_scale, out_dtype=out_dtype)
    # Exact dequantisation (power-of-two scales), then an ordinary GEMM in the output dtype (autocast off, so an
    # fp32 block under bf16 autocast still emulates in fp32, as _scaled_mm with out_dtype=fp32 computes).
    with torch.autocast(a8.device.type, enabled=False):
        return _dequantize(a8, a_scale, out_dtype) @ _dequantize(b8, b_scale, out_dtype)


def _dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``q * scale`` in ``dtype``, exactly: FP8 values and power-of-two scales are representable in bf16/fp32;
    fp16's narrower exponent range may not hold the scale itself, so fp16 goes through fp32."""
    if dtype == torch.float16:
        return (q.float() * scale).to(dtype)
    return q.to(dtype) * scale.to(dtype)


class _Fp8Linear(torch.autograd.Function):
    """``x W^T`` with an FP8 forward and an FP8 input gradient; the weight gets no gradient and ``x`` is not
    saved for backward (only the already-stored weight is)."""

    @staticmethod
    def forward(ctx, x2d: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
        x8, x_scale = quantize(x2d, E4M3)
        ctx.save_for_backward(weight, weight_t, scale)
        # (M, in) @ (in, out): weight_t is W^T row-major, weight.t() is W^T column-major.
        return _mm(x8, x_scale, weight_t, scale, x2d.dtype, weight.t())

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        weight, weight_t, scale = ctx.saved_tensors
        g8, g_scale = quantize(grad_out.contiguous(), E5M2)
        # (M, out) @ (out, in): weight is W row-major, weight_t.t() is W column-major.
        grad_x = _mm(g8, g_scale, weight, scale, grad_out.dtype, weight_t.t())
        return grad_x, None, None, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor, scale: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T + b`` with FP8 GEMMs. ``weight`` (out, in) and ``weight_t`` (in, out) hold the same e4m3 values
    (see :func:`quantize_weight`), ``scale`` their fp32 dequantisation scale; ``bias`` is added in ``x``'s dtype.
    """
    lead = x.shape[:-1]
    y = _Fp8Linear.apply(x.reshape(-1, x.shape[-1]), weight, weight_t, scale)
    y = y.reshape(*lead, weight.shape[0])
    return y if bias is None else y + bias.to(y.dtype)


@torch.no_grad()
def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(w8 (out, in), w8_t (in, out), scale)``: a frozen weight quantised once to e4m3 with one power-of-two
    scale, in both GEMM layouts."""
    if not fp8_available():
        raise RuntimeError(f"FP8 needs torch.float8_e4m3fn / float8_e5m2 and torch._scaled_mm "
                           f"(torch {torch.__version__} lacks them)")
    _cuda_fp8_devices()
    w8, scale = quantize(weight, E4M3)
    return w8, w8.t().contiguous(), scale
