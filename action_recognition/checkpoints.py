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
``llama.layers.0.*`` (Meta names) + ``llama.norm.weight``: with ``--lm4ve-policy verify`` (the default) those
must equal the block ``--llm-path`` / ``llm_layers`` built (LLaMA-7B layer 15 for the official runs) and a unit
final norm, else an error names the cause; ``file`` takes the block from the file; ``llm_mode residual`` is refused.

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
from common.frozen_lm.lm4ve import import_lm4ve

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


def load_finetuned(model: nn.Module, state: dict[str, torch.Tensor], source: str, new_head: bool = True,
                   lm4ve_policy: str = "verify") -> None:
    """A fine-tuned VideoMAE / LM4VE state into ``model``, strictly (see the module docstring).

    ``new_head=False`` (evaluation) also refuses a classifier of another shape instead of re-initialising it.
    LM4VE's LLaMA tensors go through ``common.frozen_lm.lm4ve.import_lm4ve`` with ``lm4ve_policy`` (``verify``:
    they must equal the block ``--llm-path`` / ``--llm-layers`` built).
    """
    state = dict(state)
    _drop(state, [k for k in state if k in FIXED_TABLE_KEYS], "the sinusoidal table is re-created", source)
    own = model.state_dict()
    if new_head:
        _drop(state, [k for k in ("head.weight", "head.bias") if k in state and k in own and
                      state[k].shape != own[k].shape], "classifier of another class count", source)
    try:
        state, llama = import_lm4ve(getattr(model, "llm", None), state, source, policy=lm4ve_policy)
    except LMCheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from e
    if llama.present:
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("llm.lm.")})
        log.info("%s: its LLaMA block %s --llm-path layers %s", source,
                 "equals" if lm4ve_policy == "verify" else "was loaded over", model.llm.lm.layer_indices)
    may_miss = ("head.",) if new_head and "head.weight" not in state else ()
    left = load_model_state(model, state, f"{source} [fine-tuned]", may_miss=may_miss)
    if left:
        log.info("%s: %s keep their initialisation", source, ", ".join(left))


def load_videomae_checkpoint(model: nn.Module, path: str | os.PathLike, model_key: str = "model|module",
                             lm4ve_policy: str = "verify") -> str:
    """Load ``path`` (pretrained or fine-tuned, detected) into ``model``; returns ``'pretrained'`` or
    ``'finetuned'``."""
    state, pretrained = read_state_dict(path, model_key)
    if pretrained:
        left = load_pretrained(model, state, str(path))
        log.info("%s: pretrained VideoMAE encoder loaded; %s start from their initialisation", path,
                 ", ".join(sorted({k.split(".")[0] for k in left})) or "no tensors")
        return "pretrained"
    load_finetuned(model, state, str(path), lm4ve_policy=lm4ve_policy)
    log.info("%s: fine-tuned weights loaded", path)
    return "finetuned"
