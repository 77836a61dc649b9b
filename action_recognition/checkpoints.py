"""Load VideoMAE's checkpoints (pretrained and fine-tuned) and LM4VisualEncoding's fine-tuned ones into ``VideoViT``.

Read as VideoMAE ``run_class_finetuning.py`` reads ``--finetune``: the weights are the first of ``--model_key``
(``model|module``) found in the file, else the file itself; ``backbone.`` / ``encoder.`` prefixes are stripped
(``module.`` too, for DDP-saved files). VideoMAE's files carry the run's ``argparse.Namespace`` (``args``); it is
the only non-tensor class the ``weights_only`` unpickler is allowed to rebuild.

**Pretrained** (``videomae_ssv2_vit{s,b}.pth``, ``PretrainVisionTransformer``: has ``encoder.*`` / ``decoder.*``):
the pretraining-only tensors are dropped *by name* (``PRETRAIN_ONLY``: the decoder, ``encoder_to_decoder``,
``mask_token`` and the encoder's final ``norm``, which mean pooling replaces by ``fc_norm``); ``fc_norm``,
``head`` and the LLM adapter (``llm.*``) are the only model tensors allowed to keep their initialisation
(upstream loads with ``strict=False`` and prints the rest); anything else missing, unexpected or mis-shaped is
an error naming the key.

**Fine-tuned** (VideoMAE's SSv2 releases, runs of upstream code): strict, except that ``head.*`` of another
shape is dropped by name (upstream's rule for a new class count). LM4VE's files (``ViTLLaMA``) hold
``llama_dim_mapper1/2.weight`` (-> ``llm.in_proj/out_proj.weight``) and their frozen LLaMA copy
``llama.layers.0.*`` (Meta names) + ``llama.norm.weight``: those must equal the block ``--llm-path`` /
``llm_layers`` built (LLaMA-7B layer 15 for the official runs) and a unit final norm, else an error says so.

Both: a ``pos_embed`` in the file is dropped by name; the fixed sinusoidal table is re-created for the clip size.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.errors import CheckpointError
from common.engine.state_dict import read_state_dict as read_weights
from common.engine.state_dict import strip_prefixes
from common.frozen_lm import CheckpointError as LMCheckpointError
from common.frozen_lm import LLMAdapter, LM4VELlama, check_lm4ve_llama, lm4ve_llama_matches, split_lm4ve_state_dict

log = logging.getLogger(__name__)

PRETRAIN_ONLY_PREFIXES = ("decoder.", "encoder_to_decoder.")
PRETRAIN_ONLY_KEYS = ("mask_token", "norm.weight", "norm.bias")
NEW_IN_FINETUNING = ("fc_norm.", "head.", "llm.")
FIXED_TABLE_KEYS = ("pos_embed",)


def read_state_dict(path: str | os.PathLike, model_key: str = "model|module") -> tuple[dict[str, torch.Tensor], bool]:
    """(weights with VideoMAE's prefixes stripped, whether the file is a pretraining checkpoint): the first of
    ``model_key`` found in the file, else the file itself (``common.engine.state_dict``, run args allowed)."""
    weights, _ = read_weights(path, keys=model_key.split("|"))
    pretrained = any(str(k).startswith(("encoder.", "decoder.")) for k in weights)
    return strip_prefixes(weights, ("backbone.", "encoder."), repeat=False), pretrained


def _drop(state: dict[str, torch.Tensor], keys: list[str], why: str, source: str) -> None:
    for key in keys:
        del state[key]
    if keys:
        log.info("%s: dropped %d tensors by name (%s): %s", source, len(keys), why,
                 ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else ""))


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """A VideoMAE pretraining state (prefixes stripped) into ``model``; returns the keys left at initialisation."""
    state = dict(state)
    _drop(state, [k for k in state if k.startswith(PRETRAIN_ONLY_PREFIXES) or k in PRETRAIN_ONLY_KEYS],
          "pretraining only: decoder, encoder_to_decoder, mask_token, encoder norm", source)
    _drop(state, [k for k in state if k in FIXED_TABLE_KEYS], "the sinusoidal table is re-created", source)
    return load_model_state(model, state, f"{source} [pretrained VideoMAE]", may_miss=NEW_IN_FINETUNING)


def load_finetuned(model: nn.Module, state: dict[str, torch.Tensor], source: str, new_head: bool = True) -> None:
    """A fine-tuned VideoMAE / LM4VE state into ``model``, strictly (see the module docstring).

    ``new_head=False`` (evaluation) also refuses a classifier of another shape instead of re-initialising it.
    """
    state = dict(state)
    _drop(state, [k for k in state if k in FIXED_TABLE_KEYS], "the sinusoidal table is re-created", source)
    own = model.state_dict()
    if new_head:
        _drop(state, [k for k in ("head.weight", "head.bias") if k in state and k in own and
                      state[k].shape != own[k].shape], "classifier of another class count", source)
    try:
        state, llama = split_lm4ve_state_dict(state)
        if llama.present:
            _check_lm4ve_llama(model, llama, source)
    except LMCheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from e
    may_miss = ("head.",) if new_head and "head.weight" not in state else ()
    left = load_model_state(model, state, f"{source} [fine-tuned]", may_miss=may_miss)
    if left:
        log.info("%s: %s keep their initialisation", source, ", ".join(left))


def _check_lm4ve_llama(model: nn.Module, llama: LM4VELlama, source: str) -> None:
    """LM4VE's saved LLaMA copy must be the block the model already holds (from ``--llm-path``)."""
    adapter = getattr(model, "llm", None)
    if not isinstance(adapter, LLMAdapter) or adapter.lm is None:
        raise CheckpointError(f"{source} holds LLaMA tensors ('llama.*'): build the model with llm_variant frozen "
                              "and --llm-path LLaMA-7B (llm_layers 15 for the official video runs)")
    lm = adapter.lm
    check_lm4ve_llama(lm, llama)
    if not lm4ve_llama_matches(lm, llama):
        raise CheckpointError(
            f"{source}: its LLaMA block differs from the one built from --llm-path (layers {lm.layer_indices}); "
            "pass the LLaMA it was trained with and its llm_layers (15 for LM4VE's video runs), without --llm-fp8")
    log.info("%s: its LLaMA block equals --llm-path layers %s", source, lm.layer_indices)


def load_videomae_checkpoint(model: nn.Module, path: str | os.PathLike, model_key: str = "model|module") -> str:
    """Load ``path`` (pretrained or fine-tuned, detected) into ``model``; returns ``'pretrained'`` or
    ``'finetuned'``."""
    state, pretrained = read_state_dict(path, model_key)
    if pretrained:
        left = load_pretrained(model, state, str(path))
        log.info("%s: pretrained VideoMAE encoder loaded; %s start from their initialisation", path,
                 ", ".join(sorted({k.split(".")[0] for k in left})) or "no tensors")
        return "pretrained"
    load_finetuned(model, state, str(path))
    log.info("%s: fine-tuned weights loaded", path)
    return "finetuned"
