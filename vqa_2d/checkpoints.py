"""Pretrained weights for METER, each through a strict map: the CLIP tower (``vqa_2d.clip_weights``), RoBERTa
from an HF directory, and METER's own Lightning ``.ckpt`` (``state_dict`` of ``METERTransformerSS``).

METER ``.ckpt`` keys are this model's keys except the CLIP tower (``vit_model.visual.*`` in OpenAI layout, already
``layers - 1`` blocks; ``vit_model.positional_embedding`` / ``vit_model.ln_final.*`` are CLIP text leftovers,
ignored; so are RoBERTa's unused ``text_transformer.pooler.*`` and ``*.position_ids`` buffers) and heads this run
does not build (``mlm_score``, ``itm_score``, ``vqa_classifier``, ``nlvr2_*`` ... are ignored only when the model
lacks that head; a head it has must be there with the right shape). A task head the checkpoint lacks entirely (a
pretraining checkpoint has no ``vqa_classifier``) keeps its initialisation; ``rank_output`` then starts as row 1
of ``itm_score`` as in METER.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from torch import nn

from common.engine.errors import CheckpointError

# CLIP text leftovers of METER's CLIP module; RoBERTa's pooler (METER loads RobertaModel with it, never uses it) and
# the position-id buffers transformers 4.x saved.
META_IGNORED = re.compile(r"^(vit_model\.(positional_embedding|ln_final\.\w+|token_embedding\.weight|text_projection|"
                          r"logit_scale|transformer\.resblocks\..*)|text_transformer\.pooler\..*|.*\.position_ids)$")
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


def read_hf_state(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointError(f"{directory}: no *.safetensors or pytorch_model.bin")


def load_roberta(model, path: str) -> None:
    """roberta-base (``RobertaModel`` or ``RobertaForMaskedLM`` files): ``roberta.`` prefix stripped, the LM head,
    pooler and position-id buffer ignored."""
    state = {}
    for key, value in read_hf_state(Path(path)).items():
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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 -- any unpickling failure is the same user error
        raise CheckpointError(f"--meter-ckpt {path}: cannot be read ({err})") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"--meter-ckpt {path}: no state_dict")
    load_strict(model, meter_to_model(state, model), f"--meter-ckpt {path}")


def load_pretrained(model, args: argparse.Namespace) -> None:
    """CLIP, RoBERTa and METER weights named by ``args`` (empty/None: keep the initialisation)."""
    if args.clip_path:
        load_clip(model, args.clip_path)
    if args.text_path:
        load_roberta(model, args.text_path)
    if args.meter_ckpt:
        load_meter(model, args.meter_ckpt)

