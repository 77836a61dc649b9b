"""LLMAdapter: ``Linear(visual_dim -> lm_dim) -> LLM block(s) -> Linear(lm_dim -> visual_dim)``, the paper's
F_L2(F_LM(F_L1(x))), plus the paper's controls with the same adapter shapes. LLMSpec is what a task config asks
for (YAML keys ``llm_*`` map 1:1 to its fields).

Variants:
- ``frozen``: pretrained block(s), frozen (the paper's method).
- ``finetune``: pretrained block(s), trained (paper Table 6 "LLaMA-FT").
- ``random_frozen`` / ``random_trainable``: same architecture, random init (appendix B.2 "random LLM"), drawn as
  ``random_init`` says: ``normal`` (default, N(0, 0.02)), ``torch`` (PyTorch's Linear default) or ``matched`` (each
  tensor at its pretrained tensor's scale); see ``model.RANDOM_INITS`` and the README beside this file.
- ``mlp``: GELU + LayerNorm(lm_dim) in place of the LLM (Table 6 "ViT-S-MLP": same trainable projections).
- ``none``: no adapter (baseline); :meth:`LLMAdapter.from_spec` refuses it, check ``spec.enabled``.

The two projections are drawn as ``proj_init`` says (``PROJ_INITS``): ``trunc_normal`` (default, the official code's
std 0.02) or ``orthogonal`` (``in_proj`` orthogonal, ``out_proj`` its transpose, so ``out_proj(in_proj(x)) = x`` at
the start when the LLM is at least as wide as the encoder); why the choice matters: the README beside this file.
``random_*`` and ``mlp`` read only the checkpoint's config (for its dimensions), never its tensors, except
``random_init="matched"``, which reads the requested layers' tensors for their mean and std.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from .config import resolve_layers
from .formats import read_lm_config
from .model import DTYPES, FINAL_NORMS, RANDOM_INITS, FrozenLM, pretrained_tensor_stats

VARIANTS = ("none", "frozen", "finetune", "random_frozen", "random_trainable", "mlp")
MODES = ("replace", "residual")
DEFAULT_PROJ_INIT = "trunc_normal"
PROJ_INITS = {
    "trunc_normal": "both projections trunc_normal(std=0.02), as the official code (the paper's runs)",
    "orthogonal": "in_proj orthogonal, out_proj = its transpose: the pair starts as the identity (a projection when "
                  "the LLM is narrower than the encoder) instead of a random 0.1x-scale map",
}


@dataclass
class LLMSpec:
    """How a task uses the LLM block (defaults reproduce the paper: last block, replace, unit final norm)."""

    variant: str = "none"
    path: str | None = None
    layers: tuple[int, ...] = (-1,)
    mode: str = "replace"
    final_norm: str = "unit"
    dtype: str = "float32"
    grad_checkpointing: bool = False
    seed: int = 0
    fp8: bool = False  # FP8 (e4m3) GEMMs in the frozen block, weights quantised once at load; frozen variants only
    random_init: str = "normal"  # random_* variants: normal | torch | matched (model.RANDOM_INITS)
    proj_init: str = DEFAULT_PROJ_INIT  # the two projections: trunc_normal | orthogonal (PROJ_INITS)

    def __post_init__(self) -> None:
        if isinstance(self.layers, int):
            self.layers = (self.layers,)
        elif isinstance(self.layers, str):  # "-2,-1" from a command line
            self.layers = tuple(int(p) for p in self.layers.replace(",", " ").split())
        else:
            self.layers = tuple(int(p) for p in self.layers)
        for name, value, choices in (("variant", self.variant, VARIANTS), ("mode", self.mode, MODES),
                                     ("final_norm", self.final_norm, FINAL_NORMS), ("dtype", self.dtype, DTYPES),
                                     ("random_init", self.random_init, RANDOM_INITS),
                                     ("proj_init", self.proj_init, PROJ_INITS)):
            if value not in choices:
                raise ValueError(f"llm_{name}={value!r} is not one of {', '.join(choices)}")
        if self.enabled and not self.path:
            raise ValueError(f"llm_variant={self.variant!r} needs llm_path (a checkpoint dir or .gguf file)")
        if self.fp8 and self.variant in ("finetune", "random_trainable", "mlp"):
            raise ValueError(f"llm_fp8=True needs a frozen LLM block (variant frozen or random_frozen), "
                             f"not {self.variant!r}: FP8 weights are quantised once and never trained")
        if self.random_init != "normal" and not self.variant.startswith("random"):
            raise ValueError(f"llm_random_init={self.random_init!r} applies to the random_frozen / random_trainable "
                             f"variants, not {self.variant!r}")
        if self.variant.startswith("random") and self.final_norm == "pretrained":
            raise ValueError("llm_final_norm='pretrained' makes no sense for a random block; use 'unit' or 'none'")

    @property
    def enabled(self) -> bool:
        """True unless the variant is ``none``."""
        return self.variant != "none"

    @classmethod
    def from_namespace(cls, args: argparse.Namespace | dict, prefix: str = "llm_") -> LLMSpec:
        """Build from parsed task options named ``{prefix}{field}`` (missing ones keep their defaults)."""
        values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
        found = {f.name: values[prefix + f.name] for f in fields(cls) if values.get(prefix + f.name) is not None}
        return cls(**found)

    @classmethod
    def from_config(cls, cfg: argparse.Namespace | Mapping[str, Any]) -> LLMSpec:
        """The spec of a run config's ``llm_*`` keys; ``llm_seed`` unset (None) means the run's ``seed``."""
        values = dict(vars(cfg) if isinstance(cfg, argparse.Namespace) else cfg)
        if values.get("llm_seed") is None and values.get("seed") is not None:
            values["llm_seed"] = int(values["seed"])
        return cls.from_namespace(values)


class LLMAdapter(nn.Module):
    """``replace``: x <- out_proj(LM(in_proj(x)));  ``residual``: x <- x + out_proj(LM(in_proj(x))).

    ``lm=None`` is the MLP control: GELU + LayerNorm(``mlp_hidden``) instead of the LM. Both projections are
    bias-free and drawn as ``proj_init`` says (``PROJ_INITS``).
    """

    def __init__(self, visual_dim: int, lm: FrozenLM | None, mode: str = "replace", mlp_hidden: int | None = None,
                 proj_init: str = DEFAULT_PROJ_INIT):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown adapter mode {mode!r} (choose from {', '.join(MODES)})")
        if proj_init not in PROJ_INITS:
            raise ValueError(f"unknown projection init {proj_init!r} (choose from {', '.join(PROJ_INITS)})")
        if lm is None and not mlp_hidden:
            raise ValueError("the MLP control (lm=None) needs mlp_hidden (the LLM width it stands in for)")
        lm_dim = lm.dim if lm is not None else int(mlp_hidden)
        self.visual_dim, self.lm_dim, self.mode = visual_dim, lm_dim, mode
        self.in_proj = nn.Linear(visual_dim, lm_dim, bias=False)
        self.lm = lm
        self.mlp = nn.Sequential(nn.GELU(), nn.LayerNorm(lm_dim)) if lm is None else None
        self.out_proj = nn.Linear(lm_dim, visual_dim, bias=False)
        if proj_init == "orthogonal":
            nn.init.orthogonal_(self.in_proj.weight)
            with torch.no_grad():
                self.out_proj.weight.copy_(self.in_proj.weight.T)
        else:
            for proj in (self.in_proj, self.out_proj):
                nn.init.trunc_normal_(proj.weight, std=0.02)

    @classmethod
    def from_spec(cls, visual_dim: int, spec: LLMSpec) -> LLMAdapter:
        """Build the adapter a task config asks for (see the module docstring for the variants)."""
        if not spec.enabled:
            raise ValueError("llm_variant='none' has no adapter (check spec.enabled before building one)")
        if spec.variant == "mlp":
            return cls(visual_dim, None, spec.mode, mlp_hidden=read_lm_config(spec.path).dim, proj_init=spec.proj_init)
        if spec.variant in ("frozen", "finetune"):
            lm = FrozenLM.from_checkpoint(spec.path, spec.layers, spec.final_norm, spec.dtype,
                                          trainable=spec.variant == "finetune",
                                          grad_checkpointing=spec.grad_checkpointing, fp8=spec.fp8)
        else:
            cfg = read_lm_config(spec.path)
            n_blocks = len(resolve_layers(spec.layers, cfg.n_layers))
            stats, source = pretrained_tensor_stats(spec.path, spec.layers) if spec.random_init == "matched" else \
                (None, None)
            lm = FrozenLM.from_config(cfg, n_blocks, spec.final_norm, spec.dtype,
                                      trainable=spec.variant == "random_trainable", seed=spec.seed,
                                      grad_checkpointing=spec.grad_checkpointing, fp8=spec.fp8,
                                      init=spec.random_init, stats=stats, stats_source=source)
        return cls(visual_dim, lm, spec.mode, proj_init=spec.proj_init)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` (B, N, visual_dim), ``padding_mask`` (B, N) bool with True = padding -> (B, N, visual_dim)."""
        h = self.in_proj(tokens)
        h = self.lm(h, padding_mask) if self.lm is not None else self.mlp(h)
        out = self.out_proj(h)
        return tokens + out if self.mode == "residual" else out

    def extra_repr(self) -> str:
        return f"visual_dim={self.visual_dim}, lm_dim={self.lm_dim}, mode={self.mode}"


def build_adapter(visual_dim: int, llm: LLMSpec | nn.Module | None) -> nn.Module | None:
    """A task model's ``llm`` module: None for no LLM (None or variant ``none``), an ``LLMAdapter`` built from an
    ``LLMSpec``, or a ready-made module used as is."""
    if llm is None:
        return None
    if isinstance(llm, LLMSpec):
        return LLMAdapter.from_spec(visual_dim, llm) if llm.enabled else None
    if isinstance(llm, nn.Module):
        return llm
    raise TypeError(f"llm must be an LLMSpec, an nn.Module or None, not {type(llm).__name__}")
