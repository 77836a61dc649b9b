"""Analytic FLOP counts for ``tools.bench`` (ViT + LLM adapter), counted the usual "model FLOPs" way.

One multiply-add = 2 FLOPs. Counted: every GEMM (ViT patch embedding, q/k/v, projections, MLPs, head; the
adapter's two projections; the LLM block's q/k/v, output, gate/up and down GEMMs) and the two attention matmuls
(``q k^T`` and ``p v``, 2 * N^2 * width each per sequence). Not counted: norms, softmax, activations, residual
adds, the optimizer, and recomputation (activation checkpointing, flash-attention's backward) — so the same
model has the same FLOP count in every configuration and TFLOP/s compare like img/s do.

Training step = forward + backward, where the backward of a GEMM costs 2x its forward if its weight trains
(input gradient + weight gradient) and 1x if the weight is frozen (input gradient only: the LLM block), the
patch embedding needs no input gradient (1x), and the attention matmuls cost 2x their forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from common.frozen_lm import LMConfig


@dataclass
class Flops:
    """Forward FLOPs of one batch split by how they scale in the backward pass."""

    trainable_gemm: float = 0.0  # GEMMs whose weights train and whose input needs a gradient
    first_gemm: float = 0.0  # the patch embedding: weight gradient only
    frozen_gemm: float = 0.0  # frozen LLM block GEMMs: input gradient only
    attention: float = 0.0  # q k^T and p v

    def __add__(self, other: Flops) -> Flops:
        return Flops(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    @property
    def forward(self) -> float:
        """FLOPs of one inference forward pass."""
        return self.trainable_gemm + self.first_gemm + self.frozen_gemm + self.attention

    @property
    def train_step(self) -> float:
        """FLOPs of one forward + backward pass (see the module docstring)."""
        return 3 * self.trainable_gemm + 2 * self.first_gemm + 2 * self.frozen_gemm + 3 * self.attention


def vit_flops(batch: int, n_patches: int, embed_dim: int, depth: int, mlp_ratio: float, patch_size: int,
              in_chans: int, num_classes: int) -> Flops:
    """A timm ViT with a class token, token pooling and a linear head."""
    n = n_patches + 1
    d, hidden = embed_dim, int(embed_dim * mlp_ratio)
    per_block = 2 * n * d * (3 * d + d + 2 * hidden)
    return Flops(trainable_gemm=batch * (depth * per_block + 2 * d * num_classes),
                 first_gemm=batch * 2 * n_patches * in_chans * patch_size ** 2 * d,
                 attention=batch * depth * 4 * n * n * d)


def adapter_flops(batch: int, n_tokens: int, visual_dim: int, lm_dim: int) -> Flops:
    """The two trainable bias-free projections around the LLM block."""
    return Flops(trainable_gemm=batch * 2 * (2 * n_tokens * visual_dim * lm_dim))


def llm_block_flops(batch: int, n_tokens: int, cfg: LMConfig, n_blocks: int = 1) -> Flops:
    """``n_blocks`` frozen LLM decoder blocks on ``n_tokens`` tokens (all GEMMs frozen)."""
    n, d = n_tokens, cfg.dim
    q_width, kv_width = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    ffn_mats = 3 if cfg.gated_ffn else 2
    gemm = 2 * n * d * (q_width + 2 * kv_width) + 2 * n * q_width * d + ffn_mats * 2 * n * d * cfg.ffn_hidden
    return Flops(frozen_gemm=batch * n_blocks * gemm, attention=batch * n_blocks * 4 * n * n * q_width)
