"""The LLM decoder block as the paper uses it: bidirectional attention (no causal mask), no positional
embedding (RoPE removed), optional key-padding mask. One class for llama/qwen2 (RMSNorm + SwiGLU) and OPT
(LayerNorm + 2-layer FFN, pre- or post-LN).

Fast by construction: q/k/v are one fused GEMM and gate/up one fused GEMM (fused when weights are loaded),
attention is ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels; no fp32 copy of the score
matrix), weights are stored in the compute dtype. Opt-in FP8: ``FrozenLM.enable_fp8`` quantises every block GEMM's
weight once (``fp8.py``).

The layers here are deliberately NOT ``nn.Linear`` / ``nn.LayerNorm`` subclasses: a host model that runs a
generic ``model.apply(init_fn)`` (timm's ViT does) must not re-initialise loaded LLM weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .config import LMConfig
from .fp8 import E4M3, fp8_linear, quantize_weight

# ``enable_gqa`` (torch >= 2.5) lets SDPA share k/v heads without materialising the repeated heads.
_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)

ACTIVATION_FNS = {
    "silu": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape, dtype=dtype, device=device))


class BlockLinear(nn.Module):
    """``y = x W^T + b`` with (out_features, in_features) weight; see the module docstring for why not nn.Linear.

    After :meth:`quantize_fp8_` (frozen blocks only) ``weight`` holds float8_e4m3fn values, ``weight_t`` the same
    values transposed and the ``weight_scale`` buffer their scale; the GEMMs then run in FP8 (see ``fp8.py``).
    The FP8 values are stored as their uint8 bit patterns: ``module.to(dtype)`` leaves integer tensors alone, and
    DDP's start-up broadcast works on every backend (gloo has no float8 type).
    """

    layout_copies = ("weight_t",)  # FP8: ``weight`` transposed, not counted again (engine ``count_parameters``)

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty((out_features, in_features), dtype, device)
        self.bias = _empty((out_features,), dtype, device) if bias else None
        self.register_parameter("weight_t", None)
        self.register_buffer("weight_scale", None, persistent=False)

    @property
    def fp8(self) -> bool:
        """True once the weight is quantised to FP8."""
        return self.weight_scale is not None

    @property
    def compute_dtype(self) -> torch.dtype:
        """Dtype of the GEMM's output (the weight's dtype before any FP8 quantisation)."""
        return self._fp8_out_dtype if self.fp8 else self.weight.dtype

    @torch.no_grad()
    def quantize_fp8_(self) -> None:
        """Replace the weight by its FP8 (e4m3, per-tensor power-of-two scale) version, once; irreversible.

        The FP8 tensors stay frozen parameters (shared by EMA copies, left out of a frozen LM's state dict); the
        scale is a non-persistent buffer.
        """
        if self.fp8:
            return
        w8, w8_t, scale = quantize_weight(self.weight)
        self._fp8_out_dtype = self.weight.dtype
        self.weight = nn.Parameter(w8.view(torch.uint8), requires_grad=False)
        self.weight_t = nn.Parameter(w8_t.view(torch.uint8), requires_grad=False)
        self.weight_scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fp8:
            return F.linear(x, self.weight, self.bias)
        if self.weight_scale.dtype != torch.float32:
            raise RuntimeError("an FP8 block was cast to another dtype (e.g. by module.to(dtype)); build the "
                               "FrozenLM with the dtype wanted instead")
        return fp8_linear(x, self.weight.view(E4M3), self.weight_t.view(E4M3), self.weight_scale, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
                + (", fp8=e4m3" if self.fp8 else ""))


class BlockNorm(nn.Module):
    """RMSNorm (llama/qwen2, statistics in fp32 like HF's LlamaRMSNorm) or LayerNorm (OPT).

    ``affine=False`` gives the weight-free norm used for ``final_norm="unit"`` (what the official code ends up
    with: its final RMSNorm is never loaded, so its weight stays 1).
    """

    def __init__(self, kind: str, dim: int, eps: float, affine: bool, dtype: torch.dtype, device=None):
        super().__init__()
        if kind not in ("rms", "layer"):
            raise ValueError(f"unknown norm kind {kind!r}")
        self.kind, self.dim, self.eps = kind, dim, eps
        self.weight = _empty((dim,), dtype, device) if affine else None
        self.bias = _empty((dim,), dtype, device) if affine and kind == "layer" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        y = F.rms_norm(x.float(), (self.dim,), eps=self.eps).to(x.dtype)
        return y if self.weight is None else y * self.weight

    def extra_repr(self) -> str:
        return f"{self.kind}, dim={self.dim}, eps={self.eps}, affine={self.weight is not None}"


class Attention(nn.Module):
    """Multi-head (or grouped-query) self-attention over all tokens, no positions: one fused qkv GEMM + SDPA."""

    def __init__(self, cfg: LMConfig, dtype: torch.dtype, device=None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.split = (q_rows, kv_rows, kv_rows)
        self.qkv = BlockLinear(cfg.dim, q_rows + 2 * kv_rows, cfg.qkv_bias, dtype, device)
        self.out = BlockLinear(q_rows, cfg.dim, cfg.out_bias, dtype, device)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, N, dim); ``attn_mask`` bool (B, 1, 1, N), True = may attend. Returns (B, N, dim)."""
        batch, n_tokens, _ = x.shape
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = q.view(batch, n_tokens, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, n_tokens, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, n_tokens, self.n_kv_heads, self.head_dim).transpose(1, 2)
        extra = {}
        if self.n_kv_heads != self.n_heads:
            if _SDPA_HAS_GQA and attn_mask is None:
                extra["enable_gqa"] = True
            else:  # masked kernels may not take enable_gqa: repeat k/v heads (same grouping as HF's repeat_kv)
                repeats = self.n_heads // self.n_kv_heads
                k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **extra)
        return self.out(out.transpose(1, 2).reshape(batch, n_tokens, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU ``down(act(gate x) * up x)`` with gate/up fused into one GEMM, or OPT's ``fc2(act(fc1 x))``."""

    def __init__(self, cfg: LMConfig, dtype: torch.dtype, device=None):
        super().__init__()
        self.gated, self.hidden = cfg.gated_ffn, cfg.ffn_hidden
        self.act = ACTIVATION_FNS[cfg.activation]
        self.activation = cfg.activation
        if self.gated:
            self.gate_up = BlockLinear(cfg.dim, 2 * cfg.ffn_hidden, cfg.ffn_bias, dtype, device)
            self.down = BlockLinear(cfg.ffn_hidden, cfg.dim, cfg.ffn_bias, dtype, device)
        else:
            self.fc1 = BlockLinear(cfg.dim, cfg.ffn_hidden, cfg.ffn_bias, dtype, device)
            self.fc2 = BlockLinear(cfg.ffn_hidden, cfg.dim, cfg.ffn_bias, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.gate_up(x).split(self.hidden, dim=-1)
            return self.down(self.act(gate) * up)
        return self.fc2(self.act(self.fc1(x)))

    def extra_repr(self) -> str:
        return f"activation={self.activation}, gated={self.gated}"


class Block(nn.Module):
    """One decoder block. Pre-norm: ``h = x + attn(attn_norm(x)); out = h + ffn(ffn_norm(h))``;
    OPT-350m post-norm: ``h = attn_norm(x + attn(x)); out = ffn_norm(h + ffn(h))``.

    Forward hooks on ``.attn`` / ``.ffn`` see their outputs before the residual add.
    """

    def __init__(self, cfg: LMConfig, dtype: torch.dtype, device=None):
        super().__init__()
        self.tensor_shapes = cfg.layer_tensor_shapes()  # what ``load_tensors`` takes, by logical name
        self.pre_norm = cfg.pre_norm
        self.attn_norm = BlockNorm(cfg.norm_type, cfg.dim, cfg.norm_eps, cfg.norm_affine, dtype, device)
        self.attn = Attention(cfg, dtype, device)
        self.ffn_norm = BlockNorm(cfg.norm_type, cfg.dim, cfg.norm_eps, cfg.norm_affine, dtype, device)
        self.ffn = FeedForward(cfg, dtype, device)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.attn_norm(x), attn_mask)
            return x + self.ffn(self.ffn_norm(x))
        x = self.attn_norm(x + self.attn(x, attn_mask))
        return self.ffn_norm(x + self.ffn(x))

    @torch.no_grad()
    def load_tensors(self, tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy tensors named as in ``LMConfig.layer_tensor_shapes`` into the fused parameters (casting dtype).

        ``tensors``: a mapping, or (name, tensor) pairs consumed one at a time (``CheckpointReader.iter_layer``).
        The name set must match exactly and each tensor must fill its rows of the fused parameter.
        """
        slots = {}  # logical name -> rows of its fused parameter
        for param_name, parts in self.fused_sources().items():
            param, offset = self.get_parameter(param_name), 0
            for part in parts:
                rows = self.tensor_shapes[part][0]
                slots[part] = param[offset:offset + rows]
                offset += rows
        pairs = tensors.items() if isinstance(tensors, Mapping) else tensors
        loaded = set()
        for name, tensor in pairs:
            if name not in slots or name in loaded:
                raise ValueError(f"block tensors mismatch: unexpected {'repeated ' if name in loaded else ''}{name!r}")
            if tuple(tensor.shape) != tuple(slots[name].shape):
                raise ValueError(f"{name}: shape {tuple(tensor.shape)}, the block expects {tuple(slots[name].shape)}")
            slots[name].copy_(tensor)
            loaded.add(name)
        if loaded != set(slots):
            raise ValueError(f"block tensors mismatch: missing {sorted(set(slots) - loaded)}")

    def fused_sources(self) -> dict[str, tuple[str, ...]]:
        """Parameter name -> logical tensor names stacked (along rows) into it."""
        sources: dict[str, tuple[str, ...]] = {}
        for norm in ("attn_norm", "ffn_norm"):
            for p in ("weight", "bias"):
                if getattr(getattr(self, norm), p) is not None:
                    sources[f"{norm}.{p}"] = (f"{norm}.{p}",)
        for p in ("weight", "bias"):
            if getattr(self.attn.qkv, p) is not None:
                sources[f"attn.qkv.{p}"] = tuple(f"attn.{n}.{p}" for n in "qkv")
            if getattr(self.attn.out, p) is not None:
                sources[f"attn.out.{p}"] = (f"attn.out.{p}",)
        linears = {"gate_up": ("gate", "up"), "down": ("down",)} if self.ffn.gated else {"fc1": ("fc1",),
                                                                                         "fc2": ("fc2",)}
        for name, parts in linears.items():
            for p in ("weight", "bias"):
                if getattr(getattr(self.ffn, name), p) is not None:
                    sources[f"ffn.{name}.{p}"] = tuple(f"ffn.{n}.{p}" for n in parts)
        return sources
