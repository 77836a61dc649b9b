"""FrozenLM: a stack of consecutive LLM decoder blocks (usually one, the last) plus an optional final norm.

Built from a checkpoint (only the requested layers are read) or from a config (random controls). Frozen
weights are parameters with ``requires_grad=False``; while the LM is frozen they are left out of
``state_dict()`` (training checkpoints hold only trainable weights; the LM is re-attached from its checkpoint
and identified by :attr:`FrozenLM.fingerprint`), and a state dict without them loads with ``strict=True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import Block, BlockLinear, BlockNorm
from .config import LMConfig, resolve_layers
from .formats import checkpoint_location, open_checkpoint
from .fp8 import fp8_available

FINAL_NORMS = ("none", "unit", "pretrained")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INIT_STD = 0.02  # LLaMA / OPT / Qwen2 initializer_range
# How a random block is drawn (LLMSpec.random_init, --llm-random-init); what each answers: README.md beside this file.
RANDOM_INITS = {
    "normal": "the frameworks' init: every matrix N(0, 0.02), biases 0, norm weights 1",
    "torch": "PyTorch's default Linear init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (weights and biases), norm weights 1 "
             "(what an unloaded Meta Transformer gets)",
    "matched": "scale-matched: each tensor N(mean, std) of the pretrained tensor it stands for, norm tensors at "
               "their pretrained mean (reads the requested layers of the checkpoint)",
}
TensorStats = dict[str, tuple[float, float]]  # logical tensor name -> (mean, std) of one pretrained layer


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` / ``"float32"`` / ``"bfloat16"`` / ``"float16"`` -> torch dtype (storage dtypes allowed)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown LLM dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"unsupported LLM dtype {dtype} (choose from {', '.join(DTYPES)})")
    return dtype


def _check_fp8(fp8: bool, trainable: bool) -> None:
    if fp8 and trainable:
        raise ValueError("fp8=True needs a frozen block: FP8 weights are quantised once and get no gradients "
                         "(use it with variant frozen / random_frozen, not finetune / random_trainable)")
    if fp8 and not fp8_available():
        raise ValueError(f"fp8=True needs torch.float8_e4m3fn and torch._scaled_mm (torch {torch.__version__})")


def _check_final_norm(final_norm: str) -> None:
    if final_norm not in FINAL_NORMS:
        raise ValueError(f"unknown final_norm {final_norm!r} (choose from {', '.join(FINAL_NORMS)})")


def _drop_frozen_weights(module: FrozenLM, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    if not module.trainable:
        for name, _ in module.named_parameters():
            state_dict.pop(prefix + name, None)


def _keep_frozen_weights(module: FrozenLM, state_dict: dict, prefix: str, *args) -> None:
    # A state dict saved without the frozen weights: let them "load" onto themselves so strict=True passes.
    if not module.trainable:
        for name, param in module.named_parameters():
            state_dict.setdefault(prefix + name, param)


class FrozenLM(nn.Module):
    """Consecutive decoder blocks of an LLM used on visual tokens: bidirectional SDPA attention, no RoPE.

    Build with :meth:`from_checkpoint` or :meth:`from_config` (the constructor allocates uninitialised weights).
    ``final_norm``: ``"unit"`` (default; RMSNorm/LayerNorm without weight — what the paper's official code
    runs, since its final norm is never loaded and stays at weight 1), ``"pretrained"`` (the checkpoint's final
    norm weights) or ``"none"``.
    """

    def __init__(self, config: LMConfig, n_blocks: int = 1, final_norm: str = "unit",
                 dtype: torch.dtype | str = torch.float32, trainable: bool = False, device=None):
        super().__init__()
        _check_final_norm(final_norm)
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        dtype = as_dtype(dtype)
        self.config = config
        self.dim = config.dim
        self.blocks = nn.ModuleList(Block(config, dtype, device) for _ in range(n_blocks))
        if final_norm == "none":
            self.final_norm = nn.Identity()
        else:
            self.final_norm = BlockNorm(config.norm_type, config.dim, config.norm_eps,
                                        affine=final_norm == "pretrained" and config.norm_affine, dtype=dtype,
                                        device=device)
        self.final_norm_mode = final_norm
        self.layer_indices = list(range(n_blocks))
        self.fingerprint: dict = {}
        self.load_stats = {"tensors_read": 0, "bytes_read": 0}
        self.grad_checkpointing = False
        self._weights_ready = False
        self.trainable = trainable
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_keep_frozen_weights)

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, layers: int | Iterable[int] = (-1,), final_norm: str = "unit",
                        dtype: torch.dtype | str = torch.float32, trainable: bool = False, *, device=None,
                        grad_checkpointing: bool = False, fp8: bool = False) -> FrozenLM:
        """Load only the requested consecutive ``layers`` (negatives allowed) of a Meta dir / HF dir / GGUF file.

        Strict: raises :class:`CheckpointError` for a missing, extra, mis-shaped or unreadable tensor.
        ``fp8=True`` quantises the block GEMMs' weights once after loading (:meth:`enable_fp8`; frozen only).
        """
        _check_final_norm(final_norm)
        _check_fp8(fp8, trainable)
        dtype = as_dtype(dtype)
        with open_checkpoint(path) as reader:
            indices = resolve_layers(layers, reader.config.n_layers)
            if final_norm == "pretrained":
                reader.final_norm_sources()  # fail before reading any layer
            lm = cls(reader.config, len(indices), final_norm, dtype, trainable, device)
            for block, index in zip(lm.blocks, indices):
                block.load_tensors(reader.iter_layer(index))
            if final_norm == "pretrained":
                with torch.no_grad():
                    for name, tensor in reader.read_final_norm().items():
                        getattr(lm.final_norm, name).copy_(tensor)
            lm.layer_indices = indices
            lm.load_stats = {"tensors_read": reader.tensors_read, "bytes_read": reader.bytes_read}
            lm.fingerprint = {
                "source": "checkpoint", "path": checkpoint_location(path, reader), "format": reader.format,
                "family": reader.config.family, "layers": indices, "final_norm": final_norm,
                "sha256": reader.sha256, "dtype": str(dtype).removeprefix("torch."),
            }
        lm._weights_ready = True
        lm.grad_checkpointing = grad_checkpointing
        if fp8:
            lm.enable_fp8()
        return lm

    @classmethod
    def from_config(cls, cfg: LMConfig, n_blocks: int = 1, final_norm: str = "unit",
                    dtype: torch.dtype | str = torch.float32, trainable: bool = False, seed: int | None = 0,
                    device=None, *, grad_checkpointing: bool = False, fp8: bool = False, init: str = "normal",
                    stats: list[TensorStats] | None = None, stats_source: dict | None = None) -> FrozenLM:
        """Randomly initialised blocks (the paper's random-LLM controls), drawn from a generator seeded with
        ``seed`` as ``init`` says (:data:`RANDOM_INITS`; default ``normal``: matrices N(0, 0.02), biases 0, norm
        weights 1). ``init="matched"`` needs ``stats``, one :func:`pretrained_tensor_stats` entry per block
        (``stats_source`` describes where they came from, for the fingerprint). ``device="meta"`` builds shapes
        only. ``fp8=True`` quantises the block GEMMs' weights once (:meth:`enable_fp8`; frozen only)."""
        _check_fp8(fp8, trainable)
        if final_norm == "pretrained":
            raise ValueError("final_norm='pretrained' needs a checkpoint; use 'unit' or 'none' for random blocks")
        lm = cls(cfg, n_blocks, final_norm, dtype, trainable, device)
        if torch.device(device or "cpu").type != "meta":
            lm.init_random(seed, init, stats)
        lm.fingerprint = {"source": "random", "random_seed": seed, "family": cfg.family, "config": cfg.to_dict(),
                          "n_blocks": n_blocks, "final_norm": final_norm,
                          "dtype": str(lm.compute_dtype).removeprefix("torch.")}
        if init != "normal":  # absent for the default, so runs saved before the choice existed still resume
            lm.fingerprint["random_init"] = init
        if stats_source:
            lm.fingerprint["stats_source"] = stats_source
        lm._weights_ready = True
        lm.grad_checkpointing = grad_checkpointing
        if fp8:
            lm.enable_fp8()
        return lm

    def enable_fp8(self) -> None:
        """Quantise the weights of every block GEMM (q/k/v, out, gate/up, down; OPT fc1/fc2) to float8_e4m3fn
        once, with one power-of-two scale per weight; norms, biases and attention stay in the compute dtype.
        From then on the forward GEMMs and the input-gradient GEMMs run in FP8 (``torch._scaled_mm`` on
        FP8-capable GPUs, an exact emulation elsewhere; see ``common/frozen_lm/fp8.py``). Frozen blocks only;
        irreversible. The fingerprint records ``fp8: true`` (a run trained without FP8 does not resume with it).
        """
        _check_fp8(True, self.trainable)
        for module in self.modules():
            if isinstance(module, BlockLinear):
                module.quantize_fp8_()
        self.fingerprint = {**self.fingerprint, "fp8": True}

    @torch.no_grad()
    def init_random(self, seed: int | None = 0, init: str = "normal", stats: list[TensorStats] | None = None) -> None:
        """Re-draw all weights as ``init`` says (:data:`RANDOM_INITS`; values drawn in fp32 on the CPU, so the
        same seed gives the same weights on any device and in any storage dtype). ``matched`` takes ``stats``, one
        :func:`pretrained_tensor_stats` entry per block. Deliberately not named ``reset_parameters``: frameworks
        call that on their own (e.g. meta-device materialisation)."""
        if self.fp8:
            raise RuntimeError("cannot re-initialise an FP8 FrozenLM; build a new one with from_config")
        if init not in RANDOM_INITS:
            raise ValueError(f"unknown random init {init!r} (choose from {', '.join(RANDOM_INITS)})")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if init == "matched":
            if stats is None or len(stats) != len(self.blocks):
                raise ValueError(f"random init 'matched' needs the pretrained tensor statistics of each of the "
                                 f"{len(self.blocks)} block(s) (pretrained_tensor_stats)")
            for block, block_stats in zip(self.blocks, stats):
                block.load_tensors(matched_tensors(block.tensor_shapes, block_stats, generator))
        else:
            norms = {f"{n}.{p}" for n, m in self.named_modules() if isinstance(m, BlockNorm)
                     for p, _ in m.named_parameters()}
            for name, param in self.named_parameters():
                if init == "torch" and name not in norms:  # kaiming_uniform_(a=sqrt(5)) and its bias rule
                    fan_in = self.get_parameter(name.rsplit(".", 1)[0] + ".weight").shape[1]
                    param.copy_(torch.empty(param.shape).uniform_(-fan_in ** -0.5, fan_in ** -0.5,
                                                                  generator=generator))
                elif name.endswith(".bias"):
                    param.zero_()
                elif param.ndim == 1:
                    param.fill_(1.0)
                else:
                    param.copy_(torch.empty(param.shape).normal_(0.0, INIT_STD, generator=generator))
        self._weights_ready = True

    # ---- properties ---------------------------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """False: frozen (no grads, excluded from ``state_dict``); True: finetune / random_trainable."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if value and self.fp8:
            raise ValueError("an FP8 FrozenLM cannot be trainable (its weights are quantised, with no gradients)")
        self._trainable = bool(value)
        for param in self.parameters():
            param.requires_grad_(self._trainable)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the weights are stored (and the blocks computed) in; with FP8, the dtype of everything but
        the GEMM operands (norms, attention, GEMM outputs)."""
        return self.blocks[0].attn.qkv.compute_dtype

    @property
    def fp8(self) -> bool:
        """True when the block GEMMs run in FP8 (:meth:`enable_fp8`)."""
        return self.blocks[0].attn.qkv.fp8

    # ---- forward ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, N, dim); ``padding_mask`` (B, N) bool, True = padding (never attended to).
        Returns (B, N, dim) in ``x``'s dtype; values at padded positions are meaningless."""
        if not self._weights_ready:
            raise RuntimeError("FrozenLM has no weights yet: build it with FrozenLM.from_checkpoint / from_config")
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"FrozenLM expects (B, N, {self.dim}) tokens, got {tuple(x.shape)}")
        attn_mask = None
        if padding_mask is not None:
            if tuple(padding_mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"padding_mask must be (B, N) = {tuple(x.shape[:2])}, got {tuple(padding_mask.shape)}")
            keep = ~padding_mask.to(device=x.device, dtype=torch.bool)
            keep = keep | ~keep.any(dim=1, keepdim=True)  # an all-padding sequence attends everywhere: no NaN
            attn_mask = keep[:, None, None, :]
        h = x.to(self.compute_dtype)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                h = checkpoint(block, h, attn_mask, use_reentrant=False)
            else:
                h = block(h, attn_mask)
        return self.final_norm(h).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"family={self.config.family}, layers={self.layer_indices}, final_norm={self.final_norm_mode}, "
                f"trainable={self.trainable}")


def _is_norm_tensor(name: str) -> bool:
    return name.split(".")[0].endswith("norm")


def pretrained_tensor_stats(path: str | os.PathLike,
                            layers: int | Iterable[int] = (-1,)) -> tuple[list[TensorStats], dict]:
    """(mean, std) of every tensor of the requested consecutive ``layers`` of a checkpoint (one dict per layer,
    by logical name), read one tensor at a time, and a description of the source for a fingerprint."""
    with open_checkpoint(path) as reader:
        indices = resolve_layers(layers, reader.config.n_layers)
        stats = []
        for index in indices:
            stats.append({name: (float(t.float().mean()), float(t.float().std()) if t.numel() > 1 else 0.0)
                          for name, t in reader.iter_layer(index)})
        source = {"path": str(Path(path).resolve()), "format": reader.format, "layers": indices,
                  "sha256": reader.sha256}
    return stats, source


def matched_tensors(shapes: dict[str, tuple[int, ...]], stats: TensorStats,
                    generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """One block's tensors drawn to the pretrained scale: N(mean, std) of each pretrained tensor (sorted-name
    order), norm tensors constant at their pretrained mean."""
    missing = sorted(set(shapes) - set(stats))
    if missing:
        raise ValueError(f"pretrained statistics lack {missing}")
    out = {}
    for name in sorted(shapes):
        mean, std = stats[name]
        if _is_norm_tensor(name):
            out[name] = torch.full(shapes[name], mean)
        else:
            out[name] = torch.empty(shapes[name]).normal_(mean, std, generator=generator)
    return out
