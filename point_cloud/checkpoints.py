"""Load Point-BERT's released checkpoints (and LM4VisualEncoding's fine-tuned ones) into ``PointTransformer``.

Every file is a ``torch.save`` dict with the weights under ``base_model`` (``model`` also accepted, as
Point-BERT's ``builder.load_model`` does), keys prefixed ``module.`` when saved from (Distributed)DataParallel.

**Pretrained** ``Point-BERT.pth`` (ShapeNet dVAE + masked point modelling, ``Point_BERT`` of ``Point_BERT.py``):
the fine-tuning weights are ``transformer_q.*`` minus its pretraining heads, read exactly as
``PointTransformer.load_model_from_ckpt`` reads them (``module.`` and ``transformer_q.`` / ``base_model.``
prefixes stripped). Upstream then loads with ``strict=False``; here the pretraining-only tensors are dropped
*by name* (``PRETRAIN_ONLY``), the new classification head and the LLM adapter are the only model tensors allowed
to stay at their initialisation (``NEW_IN_FINETUNING``), and anything else missing, unexpected or mis-shaped is
an error naming the key.

**Fine-tuned** checkpoints (Point-BERT's ModelNet40 / ScanObjectNN releases, LM4VE ``ckpt-best.pth``): loaded
strictly, as ``builder.load_model`` does. LM4VE's LLaMA tensors are mapped explicitly:
``llama_dim_mapper1/2.weight`` -> ``llm.in_proj/out_proj.weight``, ``llama.layers.j.<Meta name>`` -> block j of
``llm.lm`` (replacing what ``--llm-path`` provided), ``llama.norm.weight`` -> must be all ones for
``llm_final_norm: unit`` (upstream never loads it from LLaMA). When the LLaMA tensors equal the block already
built from ``--llm-path`` (the usual case: the same LLaMA layer), its fingerprint is kept, so engine checkpoints
of a run started from such a file resume and evaluate against ``--llm-path`` as usual.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from common.engine.errors import CheckpointError
from common.frozen_lm import FrozenLM, LLMAdapter
from common.frozen_lm.formats.meta import MetaReader

log = logging.getLogger(__name__)

# Pretraining-only parts of Point_BERT: the MoCo key encoder and queue, the dVAE tokenizer, the masked point
# modelling head, the mask token and the contrastive projection of the CLS token.
PRETRAIN_ONLY_PREFIXES = ("transformer_k.", "dvae.", "transformer_q.lm_head.", "transformer_q.cls_head.")
PRETRAIN_ONLY_KEYS = ("queue", "queue_ptr", "transformer_q.mask_token")
# Model tensors a pretrained checkpoint does not have: they keep their initialisation.
NEW_IN_FINETUNING = ("cls_head_finetune.", "llm.")
# BatchNorm counters: torch's loader itself tolerates their absence in old files (they restart at 0).
OPTIONAL_SUFFIX = ".num_batches_tracked"

LM4VE_PROJECTIONS = {"llama_dim_mapper1.weight": "llm.in_proj.weight",
                     "llama_dim_mapper2.weight": "llm.out_proj.weight"}
LM4VE_FINAL_NORM = "llama.norm.weight"
_LM4VE_LAYER = re.compile(r"^llama\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_META_TO_LOGICAL = {meta: logical for logical, meta in MetaReader.module_names.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a Point-BERT-style checkpoint (``base_model`` or ``model``), ``module.`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors: one line naming the file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict with 'base_model', got {type(ckpt).__name__}")
    key = "base_model" if ckpt.get("base_model") is not None else "model" if ckpt.get("model") is not None else None
    if key is None or not isinstance(ckpt[key], Mapping):
        raise CheckpointError(f"{path}: no 'base_model' (or 'model') state dict; keys: {sorted(map(str, ckpt))[:8]}")
    state = {}
    for name, tensor in ckpt[key].items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: '{key}' entry '{name}' is not a tensor")
        while name.startswith("module."):
            name = name[len("module."):]
        state[name] = tensor
    return state


def is_pretrained_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a pretraining (``Point_BERT``) state dict: it holds the ``transformer_q`` encoder."""
    return any(k.startswith("transformer_q.") for k in state)


def pretrained_to_finetune(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(fine-tuning keys -> tensors, pretraining-only keys dropped by name); unknown keys are kept (and then
    reported as unexpected by the strict load)."""
    mapped, dropped = {}, []
    for key, tensor in state.items():
        if key in PRETRAIN_ONLY_KEYS or key.startswith(PRETRAIN_ONLY_PREFIXES):
            dropped.append(key)
        elif key.startswith("transformer_q."):
            mapped[key[len("transformer_q."):]] = tensor
        elif key.startswith("base_model."):
            mapped[key[len("base_model."):]] = tensor
        else:
            mapped[key] = tensor
    return mapped, dropped


def _check_and_load(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                    may_miss: tuple[str, ...] = ()) -> list[str]:
    """Strict load except for model keys starting with ``may_miss`` (returned) and BN counters."""
    own = model.state_dict()
    missing = sorted(k for k in own.keys() - state.keys() if not k.endswith(OPTIONAL_SUFFIX))
    allowed = [k for k in missing if k.startswith(may_miss)]
    missing = [k for k in missing if not k.startswith(may_miss)]
    unexpected = sorted(state.keys() - own.keys())
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in own.keys() & state.keys() if state[k].shape != own[k].shape)
    problems = [f"{label}: {', '.join(keys[:4])}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes))
                if keys]
    if problems:
        raise CheckpointError(f"{source} does not match the model; {'; '.join(problems)}")
    result = model.load_state_dict(dict(state), strict=False)  # the key sets were checked just above
    left = [k for k in result.missing_keys if not k.endswith(OPTIONAL_SUFFIX) and not k.startswith(may_miss)]
    if left or result.unexpected_keys:
        raise CheckpointError(f"{source}: load left {left[:4]} missing, {result.unexpected_keys[:4]} unexpected")
    return allowed


def load_pretrained(model: nn.Module, path: str | os.PathLike,
                    state: Mapping[str, torch.Tensor] | None = None) -> list[str]:
    """Load ``Point-BERT.pth`` into a ``PointTransformer``; returns the model keys left at init (head, adapter).

    ``state``: the file's ``read_state_dict`` when already read.
    """
    mapped, dropped = pretrained_to_finetune(read_state_dict(path) if state is None else state)
    log.info("%s: %d pretraining-only tensors ignored by name (transformer_k, dvae, queue, lm_head, cls_head, "
             "mask_token)", path, len(dropped))
    return _check_and_load(model, mapped, f"{path} [pretrained Point-BERT]", may_miss=NEW_IN_FINETUNING)


def load_finetuned(model: nn.Module, path: str | os.PathLike,
                   state: Mapping[str, torch.Tensor] | None = None) -> None:
    """Load a fine-tuned Point-BERT / LM4VE checkpoint strictly (LM4VE LLaMA keys mapped, see module docstring)."""
    state = read_state_dict(path) if state is None else state
    source = f"{path} [fine-tuned]"
    own, blocks, final_norm = {}, {}, None
    for key, tensor in state.items():
        match = _LM4VE_LAYER.match(key)
        if key in LM4VE_PROJECTIONS:
            own[LM4VE_PROJECTIONS[key]] = tensor
        elif key == LM4VE_FINAL_NORM:
            final_norm = tensor
        elif match:
            if match.group(2) not in _META_TO_LOGICAL:
                raise CheckpointError(f"{source}: unknown LLaMA tensor '{key}'")
            logical = f"{_META_TO_LOGICAL[match.group(2)]}.{match.group(3)}"
            blocks.setdefault(int(match.group(1)), {})[logical] = tensor
        else:
            own[key] = tensor
    if blocks or final_norm is not None:
        lm, unchanged = _load_lm4ve_blocks(model, blocks, final_norm, source)
        own.update({k: v for k, v in model.state_dict().items() if k.startswith("llm.lm.")})
        if not unchanged:  # else they are the weights --llm-path gave: its fingerprint stays true
            lm.fingerprint = {"source": "lm4ve_checkpoint", "path": str(Path(path).resolve()), "format": "lm4ve",
                              "family": lm.config.family, "layers": list(lm.layer_indices),
                              "final_norm": lm.final_norm_mode, "sha256": _sha256(state, "llama."),
                              "dtype": str(lm.compute_dtype).removeprefix("torch.")}
    _check_and_load(model, own, source)


@torch.no_grad()
def _load_lm4ve_blocks(model: nn.Module, blocks: dict[int, dict[str, torch.Tensor]], final_norm: torch.Tensor | None,
                       source: str) -> tuple[FrozenLM, bool]:
    """Copy LM4VE's LLaMA tensors into the model's FrozenLM; returns it and whether they equal what it held."""
    adapter = getattr(model, "llm", None)
    if not isinstance(adapter, LLMAdapter) or adapter.lm is None or adapter.mode != "replace":
        raise CheckpointError(f"{source} holds LLaMA tensors ('llama.*'); build the model with llm_variant frozen "
                              "(or finetune / random_*) and llm_mode replace to load it")
    lm = adapter.lm
    if sorted(blocks) != list(range(len(lm.blocks))):
        raise CheckpointError(f"{source} has LLaMA blocks {sorted(blocks)}; the model has {len(lm.blocks)} "
                              "(llm_layers must select as many)")
    expected = lm.config.layer_tensor_shapes()
    for j, tensors in sorted(blocks.items()):
        for name in sorted(set(expected) | set(tensors)):
            key = f"llama.layers.{j}.{MetaReader.module_names.get(name.rsplit('.', 1)[0])}.{name.rsplit('.', 1)[1]}"
            if name not in tensors or name not in expected:
                raise CheckpointError(f"{source}: {'missing' if name not in tensors else 'unexpected'} tensor '{key}'")
            if tuple(tensors[name].shape) != tuple(expected[name]):
                raise CheckpointError(f"{source}: '{key}' has shape {tuple(tensors[name].shape)}, the LLM block "
                                      f"needs {tuple(expected[name])}")
    unchanged = all(_block_holds(lm.blocks[j], tensors) for j, tensors in blocks.items())
    for j, tensors in sorted(blocks.items()):
        lm.blocks[j].load_tensors(tensors)
    if final_norm is None:
        raise CheckpointError(f"{source}: missing '{LM4VE_FINAL_NORM}'")
    if lm.final_norm_mode == "unit" and not torch.all(final_norm == 1):
        raise CheckpointError(f"{source}: '{LM4VE_FINAL_NORM}' is not all ones; use llm_final_norm pretrained")
    if lm.final_norm_mode == "none":
        raise CheckpointError(f"{source}: LM4VE ends the LLaMA stack with an RMSNorm; use llm_final_norm unit")
    if lm.final_norm_mode == "pretrained":
        unchanged = unchanged and torch.equal(lm.final_norm.weight, final_norm.to(lm.final_norm.weight.dtype))
        lm.final_norm.weight.copy_(final_norm)
    return lm, unchanged


def _block_holds(block: nn.Module, tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``block``'s (fused) parameters already equal ``tensors`` (logical names)."""
    for name, parts in block.fused_sources().items():
        param = block.get_parameter(name)
        if not torch.equal(param, torch.cat([tensors[p] for p in parts]).to(param.dtype)):
            return False
    return True


def _sha256(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    digest = hashlib.sha256()
    for key in sorted(k for k in state if k.startswith(prefix)):
        tensor = state[key].detach().contiguous().cpu()
        digest.update(key.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_point_bert_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Load ``path`` as pretrained (it has ``transformer_q.*``) or fine-tuned weights; returns which."""
    state = read_state_dict(path)
    if is_pretrained_state(state):
        left = load_pretrained(model, path, state)
        log.info("loaded pretrained Point-BERT %s; at initialisation: %s", path, ", ".join(left) or "nothing")
        return "pretrained"
    load_finetuned(model, path, state)
    log.info("loaded fine-tuned checkpoint %s", path)
    return "finetuned"
