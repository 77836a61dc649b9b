"""The frozen block inside ziqipang/LM4VisualEncoding's saved models (``ViTLLaMA`` / ``PointTransformer`` /
VideoMAE ``ViTLLaMA`` state dicts), mapped onto an ``LLMAdapter``:

    llama_dim_mapper1.weight / llama_dim_mapper2.weight   -> <adapter>.in_proj.weight / <adapter>.out_proj.weight
    llama.layers.{j}.<Meta name>.{weight,bias}            -> block j of the adapter's FrozenLM (logical names)
    llama.norm.weight                                     -> the final norm: upstream never loads it from LLaMA (it
                                                             stays 1), so final_norm "unit" needs all ones;
                                                             "pretrained" loads it; "none" cannot reproduce it

``llama.layers.0`` is the first LLaMA layer upstream kept (e.g. 31 of LLaMA-7B's 32). Every ``llama*`` key is
mapped explicitly; an unknown, missing or mis-shaped one is a :class:`CheckpointError` naming it.

:func:`import_lm4ve` is the one import every task uses, with an explicit policy for the block in the file:

- ``file``: take the block from the file (it replaces what ``--llm-path`` built; when the two are equal the
  fingerprint of ``--llm-path`` is kept, so runs started from the file resume against ``--llm-path``);
- ``verify``: the file's block must equal the one ``--llm-path`` / ``--llm-layers`` built; a difference is refused
  with its cause (which tensor, which layer, the final norm).

Either way the file is refused for ``llm_mode residual`` (LM4VE's models replace the tokens by the block's output;
a residual adapter computes something else) and the message names the true cause and the flag that fixes it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import CheckpointError
from .formats.meta import MetaReader
from .model import FrozenLM

LM4VE_PROJECTIONS = {"llama_dim_mapper1.weight": "in_proj.weight", "llama_dim_mapper2.weight": "out_proj.weight"}
LM4VE_FINAL_NORM = "llama.norm.weight"
_LAYER_KEY = re.compile(r"^llama\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_META_TO_LOGICAL = {meta: logical for logical, meta in MetaReader.module_names.items()}


@dataclass
class LM4VELlama:
    """The LLaMA part of an LM4VE state dict."""

    blocks: dict[int, dict[str, torch.Tensor]]  # block j -> tensors by logical name (LMConfig.layer_tensor_shapes)
    final_norm: torch.Tensor | None  # llama.norm.weight
    sha256: str  # of every llama.* tensor (key, shape, bytes)

    @property
    def present(self) -> bool:
        """Whether the state dict held any LLaMA tensor."""
        return bool(self.blocks) or self.final_norm is not None


def lm4ve_key(block: int, logical: str) -> str:
    """The LM4VE (Meta) key of logical tensor ``logical`` of block ``block``."""
    module, _, param = logical.rpartition(".")
    return f"llama.layers.{block}.{MetaReader.module_names.get(module, module)}.{param}"


def split_lm4ve_state_dict(state: Mapping[str, torch.Tensor], adapter_prefix: str = "llm."
                           ) -> tuple[dict[str, torch.Tensor], LM4VELlama]:
    """(every other tensor, with the two mappers renamed to ``{adapter_prefix}in_proj/out_proj.weight``; the
    LLaMA part). Raises :class:`CheckpointError` for a ``llama*`` key it cannot map."""
    rest: dict[str, torch.Tensor] = {}
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    final_norm = None
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key]
        match = _LAYER_KEY.match(key)
        if key in LM4VE_PROJECTIONS:
            rest[adapter_prefix + LM4VE_PROJECTIONS[key]] = tensor
            continue
        if not key.startswith("llama"):
            rest[key] = tensor
            continue
        if key == LM4VE_FINAL_NORM:
            final_norm = tensor
        elif match and match.group(2) in _META_TO_LOGICAL:
            blocks.setdefault(int(match.group(1)), {})[f"{_META_TO_LOGICAL[match.group(2)]}.{match.group(3)}"] = tensor
        else:
            raise CheckpointError(f"unknown LLaMA tensor '{key}'")
        data = tensor.detach().contiguous().cpu()
        digest.update(key.encode())
        digest.update(repr(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return rest, LM4VELlama(blocks, final_norm, digest.hexdigest())


def check_lm4ve_llama(lm: FrozenLM, llama: LM4VELlama) -> None:
    """Refuse LLaMA tensors that do not fit ``lm``: block count, every tensor name and shape, the final norm for
    ``lm``'s final-norm mode (see the module docstring)."""
    if sorted(llama.blocks) != list(range(len(lm.blocks))):
        raise CheckpointError(f"it has {len(llama.blocks)} LLaMA block(s), the model's LLM {len(lm.blocks)} "
                              "(--llm-layers must select as many)")
    expected = lm.config.layer_tensor_shapes()
    for j, tensors in sorted(llama.blocks.items()):
        for name in sorted(set(expected) | set(tensors)):
            key = lm4ve_key(j, name)
            if name not in tensors:
                raise CheckpointError(f"missing tensor '{key}'")
            if name not in expected:
                raise CheckpointError(f"unexpected tensor '{key}' for a {lm.config.family} block")
            if tuple(tensors[name].shape) != tuple(expected[name]):
                raise CheckpointError(f"'{key}' has shape {tuple(tensors[name].shape)}, the LLM block of --llm-path "
                                      f"needs {tuple(expected[name])} (another LLM width: pass the LLM it was trained "
                                      "with)")
    weight = llama.final_norm
    if weight is None:
        raise CheckpointError(f"missing '{LM4VE_FINAL_NORM}'")
    if tuple(weight.shape) != (lm.dim,):
        raise CheckpointError(f"'{LM4VE_FINAL_NORM}' has shape {tuple(weight.shape)}, expected ({lm.dim},)")
    if lm.final_norm_mode == "none":
        raise CheckpointError("LM4VE ends its LLaMA stack with an RMSNorm; llm_final_norm 'none' cannot reproduce "
                              "it (use --llm-final-norm unit)")
    if lm.final_norm_mode == "unit" and not torch.all(weight == 1):
        raise CheckpointError(f"'{LM4VE_FINAL_NORM}' is not all ones, so llm_final_norm 'unit' would drop it; use "
                              "--llm-final-norm pretrained")


@torch.no_grad()
def lm4ve_llama_matches(lm: FrozenLM, llama: LM4VELlama) -> bool:
    """Whether ``lm`` already holds exactly these (checked) LLaMA tensors, e.g. the layer ``--llm-path`` gave."""
    for j, tensors in llama.blocks.items():
        block = lm.blocks[j]
        for name, parts in block.fused_sources().items():
            param = block.get_parameter(name)
            if not torch.equal(param, torch.cat([tensors[p] for p in parts]).to(param.dtype)):
                return False
    if lm.final_norm_mode == "pretrained":
        return torch.equal(lm.final_norm.weight, llama.final_norm.to(lm.final_norm.weight.dtype))
    return True


@torch.no_grad()
def load_lm4ve_llama(lm: FrozenLM, llama: LM4VELlama, path: str, origin: str = "lm4ve_checkpoint",
                     keep_fingerprint_if_same: bool = False) -> bool:
    """Check (:func:`check_lm4ve_llama`) and copy the LLaMA tensors into ``lm``; returns whether ``lm`` held them
    already. ``lm.fingerprint`` then names ``path`` (``source`` = ``origin``) and the tensors' sha256, except with
    ``keep_fingerprint_if_same`` when they equal what ``lm`` held (its fingerprint stays true)."""
    check_lm4ve_llama(lm, llama)
    same = lm4ve_llama_matches(lm, llama)
    for j, tensors in sorted(llama.blocks.items()):
        lm.blocks[j].load_tensors(tensors)
    if lm.final_norm_mode == "pretrained":
        lm.final_norm.weight.copy_(llama.final_norm)
    if not (same and keep_fingerprint_if_same):
        lm.fingerprint = {"source": origin, "path": path, "format": "lm4ve", "family": lm.config.family,
                          "layers": list(lm.layer_indices), "final_norm": lm.final_norm_mode, "sha256": llama.sha256,
                          "dtype": str(lm.compute_dtype).removeprefix("torch.")}
    return same


LM4VE_POLICIES = ("file", "verify")


def add_lm4ve_args(parser: argparse.ArgumentParser, default: str) -> None:
    """``--lm4ve-policy``: what to do with the LLaMA block inside an LM4VisualEncoding checkpoint."""
    parser.add_argument("--lm4ve-policy", default=default, choices=LM4VE_POLICIES,
                        help="an LM4VisualEncoding checkpoint's LLaMA block: 'file' takes it from the file (replacing "
                        "--llm-path's), 'verify' requires it to equal --llm-path / --llm-layers and refuses a "
                        "difference naming its cause")


@torch.no_grad()
def lm4ve_difference(lm: FrozenLM, llama: LM4VELlama) -> str | None:
    """Why the (checked) file's LLaMA tensors differ from ``lm``'s, or None when they are equal."""
    for j, tensors in sorted(llama.blocks.items()):
        block = lm.blocks[j]
        for name, parts in block.fused_sources().items():
            param = block.get_parameter(name)
            if not torch.equal(param, torch.cat([tensors[p] for p in parts]).to(param.dtype)):
                return (f"its LLaMA block {j} differs from layer {lm.layer_indices[j]} of --llm-path (first at "
                        f"'{lm4ve_key(j, parts[0])}'): another layer (--llm-layers; LM4VE's video runs keep layer 15, "
                        "its image and point-cloud runs the last) or another LLM (--llm-path), or --llm-fp8")
    if lm.final_norm_mode == "pretrained" and not torch.equal(
            lm.final_norm.weight, llama.final_norm.to(lm.final_norm.weight.dtype)):
        return (f"'{LM4VE_FINAL_NORM}' differs from the final norm llm_final_norm 'pretrained' loaded from --llm-path "
                "(LM4VE never loads LLaMA's final norm: use --llm-final-norm unit)")
    return None


def import_lm4ve(adapter: torch.nn.Module | None, state: Mapping[str, torch.Tensor], source: str,
                 policy: str = "file", adapter_prefix: str = "llm.", origin: str = "lm4ve_checkpoint",
                 keep_fingerprint_if_same: bool = True) -> tuple[dict[str, torch.Tensor], LM4VELlama]:
    """Split an LM4VE state dict and bring its LLaMA part into ``adapter`` (an ``LLMAdapter``) by ``policy``.

    Returns (every other tensor, the two mappers renamed to ``{adapter_prefix}in_proj/out_proj.weight``; the LLaMA
    part). A state dict without LLaMA tensors passes through. Under ``file`` the fingerprint names ``source``
    (``origin``) unless the block equals what ``adapter`` held and ``keep_fingerprint_if_same``. Raises
    :class:`CheckpointError` with the cause: no LLM block in the model, ``llm_mode residual``, block count, tensor
    names and shapes (another LLM width), the final norm, and under ``verify`` the first differing tensor and its
    layer.
    """
    if policy not in LM4VE_POLICIES:
        raise ValueError(f"policy must be one of {LM4VE_POLICIES}, got {policy!r}")
    rest, llama = split_lm4ve_state_dict(state, adapter_prefix)
    if not llama.present:
        return rest, llama
    lm = getattr(adapter, "lm", None)
    if not isinstance(lm, FrozenLM):
        raise CheckpointError("it holds LM4VisualEncoding LLaMA tensors ('llama.*'): build the model with "
                              "--llm-variant frozen (or finetune / random_*) and --llm-path to load it")
    if getattr(adapter, "mode", "replace") != "replace":
        raise CheckpointError(f"LM4VisualEncoding's models replace the tokens by the block's output; llm_mode "
                              f"'{adapter.mode}' would compute something else with these weights: use --llm-mode "
                              "replace")
    check_lm4ve_llama(lm, llama)
    if policy == "verify":
        cause = lm4ve_difference(lm, llama)
        if cause is not None:
            raise CheckpointError(f"{cause}; or --lm4ve-policy file to take the block from the file")
    else:
        load_lm4ve_llama(lm, llama, source, origin=origin, keep_fingerprint_if_same=keep_fingerprint_if_same)
    return rest, llama
