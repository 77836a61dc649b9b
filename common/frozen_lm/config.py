"""LMConfig: the shape of one LLM transformer block, read from a checkpoint's own config.

Canonical ("logical") tensor names of one block, used by every format reader and by the blocks:
``attn_norm.{weight,bias}``, ``attn.{q,k,v,out}.{weight,bias}``, ``ffn_norm.{weight,bias}`` and
``ffn.{gate,up,down}.{weight,bias}`` (llama/qwen2 SwiGLU) or ``ffn.{fc1,fc2}.{weight,bias}`` (OPT).
Linear weights are (out_features, in_features) in the Hugging Face row order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

FAMILIES = ("llama", "qwen2", "opt")
ACTIVATIONS = ("silu", "relu", "gelu", "gelu_tanh")
Shape = tuple[int, ...]


@dataclass(frozen=True)
class LMConfig:
    """Architecture of the decoder blocks of one LLM (everything needed to build and check one block).

    ``family`` selects the block type: ``llama`` (RMSNorm, SwiGLU FFN; also Mistral/SmolLM2), ``qwen2`` (llama
    with q/k/v biases) or ``opt`` (LayerNorm with bias, two-layer FFN, biases everywhere, pre- or post-LN).
    """

    family: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    norm_eps: float
    activation: str = "silu"
    pre_norm: bool = True  # False only for OPT-350m (post-LN)
    qkv_bias: bool = False
    out_bias: bool = False
    ffn_bias: bool = False
    norm_affine: bool = True  # OPT's layer_norm_elementwise_affine
    has_final_norm: bool = True  # post-LN OPT has no final LayerNorm

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown LM family {self.family!r} (known: {', '.join(FAMILIES)})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r} (known: {', '.join(ACTIVATIONS)})")
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LMConfig.{name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")
        if self.family != "opt" and not (self.pre_norm and self.norm_affine):
            raise ValueError(f"post-norm / non-affine norms exist only for family 'opt', not {self.family!r}")

    @property
    def norm_type(self) -> str:
        """``"layer"`` (LayerNorm, OPT) or ``"rms"`` (RMSNorm, llama/qwen2)."""
        return "layer" if self.family == "opt" else "rms"

    @property
    def gated_ffn(self) -> bool:
        """True for SwiGLU (``down(act(gate x) * up x)``), False for OPT's ``fc2(act(fc1 x))``."""
        return self.family != "opt"

    def norm_shapes(self) -> dict[str, Shape]:
        """Tensors of one norm (block norm or final norm), by parameter name."""
        if not self.norm_affine:
            return {}
        shapes = {"weight": (self.dim,)}
        if self.norm_type == "layer":
            shapes["bias"] = (self.dim,)
        return shapes

    def layer_tensor_shapes(self) -> dict[str, Shape]:
        """Every tensor one block must have, by logical name (see the module docstring), with its shape."""
        q_rows, kv_rows = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        shapes: dict[str, Shape] = {}
        for norm in ("attn_norm", "ffn_norm"):
            shapes.update({f"{norm}.{p}": s for p, s in self.norm_shapes().items()})
        for name, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            shapes[f"attn.{name}.weight"] = (rows, self.dim)
            if self.qkv_bias:
                shapes[f"attn.{name}.bias"] = (rows,)
        shapes["attn.out.weight"] = (self.dim, q_rows)
        if self.out_bias:
            shapes["attn.out.bias"] = (self.dim,)
        if self.gated_ffn:
            linears = {"gate": (self.ffn_hidden, self.dim), "up": (self.ffn_hidden, self.dim),
                       "down": (self.dim, self.ffn_hidden)}
        else:
            linears = {"fc1": (self.ffn_hidden, self.dim), "fc2": (self.dim, self.ffn_hidden)}
        for name, shape in linears.items():
            shapes[f"ffn.{name}.weight"] = shape
            if self.ffn_bias:
                shapes[f"ffn.{name}.bias"] = (shape[0],)
        return shapes

    def params_per_layer(self) -> int:
        """Number of parameters of one block."""
        total = 0
        for shape in self.layer_tensor_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def to_dict(self) -> dict:
        """JSON-able dict (inverse: :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LMConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LMConfig keys: {', '.join(unknown)}")
        return cls(**data)


def meta_ffn_hidden(dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """FFN hidden size of Meta's LLaMA ``FeedForward`` (llama/model.py): 2/3 of 4*dim, optionally scaled,
    rounded up to ``multiple_of``. LLaMA-1 7B: 11008; LLaMA-2 70B: 28672; LLaMA-3 8B: 14336."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def resolve_layers(layers: int | Iterable[int], n_layers: int) -> list[int]:
    """Turn requested layer indices (negatives count from the end) into ascending consecutive indices.

    Raises ValueError for an empty request, an index out of range, or indices that are not consecutive.
    """
    requested = [layers] if isinstance(layers, int) else list(layers)
    if not requested:
        raise ValueError("no LLM layer requested")
    resolved = []
    for index in requested:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"layer index must be an int, got {index!r}")
        if not -n_layers <= index < n_layers:
            raise ValueError(f"layer index {index} out of range for a {n_layers}-layer model")
        resolved.append(index % n_layers)
    if resolved != list(range(resolved[0], resolved[0] + len(resolved))):
        raise ValueError(f"layers {requested} resolve to {resolved}: several layers must be consecutive and ascending")
    return resolved
