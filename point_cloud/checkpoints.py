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
``llm.lm`` (``--lm4ve-policy file``, the default: replacing what ``--llm-path`` provided; ``verify``: it must
equal it), ``llama.norm.weight`` -> must be all ones for ``llm_final_norm: unit`` (upstream never loads it from
LLaMA); ``llm_mode residual`` is refused (``common.frozen_lm.lm4ve.import_lm4ve``). When the LLaMA tensors
equal the block already built from ``--llm-path`` (the usual case: the same LLaMA layer), its fingerprint is
kept, so engine checkpoints of a run started from such a file resume and evaluate against ``--llm-path`` as
usual.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.errors import CheckpointError
from common.engine.state_dict import read_state_dict as read_weights
from common.frozen_lm import CheckpointError as LMCheckpointError
from common.frozen_lm.lm4ve import import_lm4ve

log = logging.getLogger(__name__)

# Pretraining-only parts of Point_BERT: the MoCo key encoder and queue, the dVAE tokenizer, the masked point
# modelling head, the mask token and the contrastive projection of the CLS token.
PRETRAIN_ONLY_PREFIXES = ("transformer_k.", "dvae.", "transformer_q.lm_head.", "transformer_q.cls_head.")
PRETRAIN_ONLY_KEYS = ("queue", "queue_ptr", "transformer_q.mask_token")
# Model tensors a pretrained checkpoint does not have: they keep their initialisation.
NEW_IN_FINETUNING = ("cls_head_finetune.", "llm.")
# BatchNorm counters: torch's loader itself tolerates their absence in old files (they restart at 0).
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a Point-BERT-style checkpoint (``base_model`` or ``model``), ``module.`` prefixes removed."""
    return read_weights(path, keys=("base_model", "model"), allow_bare=False)[0]


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


def load_pretrained(model: nn.Module, path: str | os.PathLike,
                    state: Mapping[str, torch.Tensor] | None = None) -> list[str]:
    """Load ``Point-BERT.pth`` into a ``PointTransformer``; returns the model keys left at init (head, adapter).

    ``state``: the file's ``read_state_dict`` when already read.
    """
    mapped, dropped = pretrained_to_finetune(read_state_dict(path) if state is None else state)
    log.info("%s: %d pretraining-only tensors ignored by name (transformer_k, dvae, queue, lm_head, cls_head, "
             "mask_token)", path, len(dropped))
    return load_model_state(model, mapped, f"{path} [pretrained Point-BERT]", may_miss=NEW_IN_FINETUNING,
                            optional_suffixes=OPTIONAL_SUFFIXES)


def load_finetuned(model: nn.Module, path: str | os.PathLike,
                   state: Mapping[str, torch.Tensor] | None = None, lm4ve_policy: str = "file") -> None:
    """Load a fine-tuned Point-BERT / LM4VE checkpoint strictly (LM4VE LLaMA keys through
    ``common.frozen_lm.lm4ve.import_lm4ve`` with ``lm4ve_policy``, see the module docstring)."""
    state = read_state_dict(path) if state is None else state
    source = f"{path} [fine-tuned]"
    try:
        own, llama = import_lm4ve(getattr(model, "llm", None), state, str(Path(path).resolve()), policy=lm4ve_policy)
    except LMCheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from e
    if llama.present:
        own.update({k: v for k, v in model.state_dict().items() if k.startswith("llm.lm.")})
    load_model_state(model, own, source, optional_suffixes=OPTIONAL_SUFFIXES)


def load_point_bert_checkpoint(model: nn.Module, path: str | os.PathLike, lm4ve_policy: str = "file") -> str:
    """Load ``path`` as pretrained (it has ``transformer_q.*``) or fine-tuned weights; returns which."""
    state = read_state_dict(path)
    if is_pretrained_state(state):
        left = load_pretrained(model, path, state)
        log.info("loaded pretrained Point-BERT %s; at initialisation: %s", path, ", ".join(left) or "nothing")
        return "pretrained"
    load_finetuned(model, path, state, lm4ve_policy)
    log.info("loaded fine-tuned checkpoint %s", path)
    return "finetuned"
