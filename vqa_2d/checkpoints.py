"""Pretrained weights for METER, each through a strict map: the CLIP tower (``vqa_2d.clip_weights``), RoBERTa
from an HF directory, and METER's own Lightning ``.ckpt`` (``state_dict`` of ``METERTransformerSS``).

METER ``.ckpt`` keys are this model's keys except the CLIP tower (``vit_model.visual.*`` in OpenAI layout, already
``layers - 1`` blocks; ``vit_model.positional_embedding`` / ``vit_model.ln_final.*`` are CLIP text leftovers,
ignored; so are RoBERTa's unused ``text_transformer.pooler.*`` and ``*.position_ids`` buffers) and heads this run
does not build (``mlm_score``, ``itm_score``, ``vqa_classifier``, ``nlvr2_*`` ... are ignored only when the model
lacks that head; a head it has must be there with the right shape). A task head the checkpoint lacks entirely (a
pretraining checkpoint has no ``vqa_classifier``) keeps its initialisation; ``rank_output`` then starts as row 1
of ``itm_score`` as in METER.

Every file is read with ``weights_only=True`` (``common.engine.state_dict``). A METER ``.ckpt`` is a PyTorch
Lightning 1.3 checkpoint: besides plain values it pickles ``save_hyperparameters``' ``AttributeDict`` and, as the
key of ``callbacks``, the ``ModelCheckpoint`` class (PL 1.3 ``callback_states[type(callback)]``). Neither package
is needed: local stand-ins carry those two names, so the unpickler builds a plain dict / a bare key class and
refuses every other class.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from torch import nn

from common.engine.errors import CheckpointError
from common.engine.state_dict import ALLOWED_GLOBALS, read_state_dict

# CLIP text leftovers of METER's CLIP module; RoBERTa's pooler (METER loads RobertaModel with it, never uses it) and
# the position-id buffers transformers 4.x saved.
META_IGNORED = re.compile(r"^(vit_model\.(positional_embedding|ln_final\.\w+|token_embedding\.weight|text_projection|"
                          r"logit_scale|transformer\.resblocks\..*)|text_transformer\.pooler\..*|.*\.position_ids)$")


class _AttributeDict:
    """Stand-in for ``pytorch_lightning.utilities.parsing.AttributeDict`` (METER's hyper-parameters): builds a
    plain ``dict``, as torch's ``weights_only`` unpickler fills (SETITEMS) only exact dict types, no subclass."""

    def __new__(cls, *args, **kwargs) -> dict:
        return dict(*args, **kwargs)


class _ModelCheckpoint:
    """Stand-in for ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` (a dict key only)."""


# Registered under the upstream names: torch's allow-list matches ``module.qualname``.
_AttributeDict.__module__, _AttributeDict.__qualname__ = "pytorch_lightning.utilities.parsing", "AttributeDict"
_ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
_ModelCheckpoint.__qualname__ = "ModelCheckpoint"
LIGHTNING_GLOBALS = (*ALLOWED_GLOBALS, _AttributeDict, _ModelCheckpoint)
HEAD_PREFIXES = ("mlm_score.", "itm_score.", "vqa_classifier.", "nlvr2_classifier.", "snli_classifier.",
                 "rank_output.")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with shape checks first; any problem is one ``CheckpointError``."""
    own = module.state_dict()
    missing = sorted(own.keys() - state.keys())
    extra = sorted(state.keys() - own.keys())
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
    if extra:
        problems.append(f"unexpected {', '.join(extra[:4])}" + (" ..." if len(extra) > 4 else ""))
    if shapes:
        problems.append(f"mis-shaped {', '.join(shapes[:3])}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def load_clip(model, path: str) -> None:
    from vqa_2d.clip_weights import CLIPWeightsError, load_clip_tower

    grid = model.cfg.image_size // model.cfg.vit_patch
    try:
        state, _ = load_clip_tower(path, grid)
    except CLIPWeightsError as err:
        raise CheckpointError(f"--clip-path {path}: {err}") from err
    load_strict(model.vit_model, state, f"--clip-path {path}")


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model directory: its ``*.safetensors`` shards, else ``pytorch_model.bin``
    (read ``weights_only``). ``CheckpointError`` naming the directory when it holds neither."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if files:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                state.update(load_file(str(f)))
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"cannot read {f}: {err}") from err
        return state
    if (directory / "pytorch_model.bin").is_file():
        return read_state_dict(directory / "pytorch_model.bin", keys=())[0]
    raise CheckpointError(f"{directory}: no *.safetensors or pytorch_model.bin")


def load_roberta(model, path: str) -> None:
    """roberta-base (``RobertaModel`` or ``RobertaForMaskedLM`` files): ``roberta.`` prefix stripped, the LM head,
    pooler and position-id buffer ignored."""
    state = {}
    for key, value in read_hf_weights(path).items():
        name = key.removeprefix("roberta.")
        if name.startswith(("lm_head.", "pooler.")) or name.endswith("position_ids"):
            continue
        state[name] = value
    load_strict(model.text_transformer, state, f"--text-path {path}")


def meter_to_model(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """METER ``state_dict`` -> this model's keys (the CLIP part through the OpenAI map, no block dropped)."""
    from vqa_2d.clip_weights import openai_to_hf

    own = model.state_dict()
    visual = {k.removeprefix("vit_model."): v for k, v in state.items() if k.startswith("vit_model.visual.")}
    grid = model.cfg.image_size // model.cfg.vit_patch
    out = {f"vit_model.{k}": v for k, v in openai_to_hf(visual, grid, drop_last=False).items()}
    for key, value in state.items():
        if key.startswith("vit_model.visual.") or META_IGNORED.match(key):
            continue
        if key.startswith(HEAD_PREFIXES) and key not in own:
            continue
        out[key] = value
    if model.llm is not None:  # the adapter is new: keep its initialisation
        out.update({k: v for k, v in own.items() if k.startswith("llm.")})
    if "rank_output.weight" in own and "rank_output.weight" not in out and "itm_score.fc.weight" in out:
        # METER's IR/TR fine-tuning from a pretrained checkpoint: rank_output starts as the ITM "match" row
        out["rank_output.weight"] = out["itm_score.fc.weight"][1:].clone()
        out["rank_output.bias"] = out["itm_score.fc.bias"][1:].clone()
    for head in ("vqa_classifier.", "rank_output."):  # a task head the checkpoint lacks entirely stays at its init
        if not any(k.startswith(head) for k in out):
            out.update({k: v for k, v in own.items() if k.startswith(head)})
    return out


def load_meter(model, path: str) -> None:
    """METER's Lightning ``.ckpt`` (its ``state_dict``) into ``model`` through ``meter_to_model``, strictly."""
    try:
        state, _ = read_state_dict(path, keys=("state_dict",), allow=LIGHTNING_GLOBALS)
    except CheckpointError as err:
        raise CheckpointError(f"--meter-ckpt {err}") from err
    load_strict(model, meter_to_model(state, model), f"--meter-ckpt {path}")


def load_pretrained(model, args: argparse.Namespace) -> None:
    """CLIP, RoBERTa and METER weights named by ``args`` (empty/None: keep the initialisation)."""
    if args.clip_path:
        load_clip(model, args.clip_path)
    if args.text_path:
        load_roberta(model, args.text_path)
    if args.meter_ckpt:
        load_meter(model, args.meter_ckpt)

