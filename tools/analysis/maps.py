"""Token-activation maps per stage: the Python API the CLI and the README demo use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tools.analysis.capture import Capture, run_with_hooks
from tools.analysis.measures import MEASURES, minmax_normalise, token_activation
from tools.analysis.spec import AnalysisSpec


def build_spec(model: nn.Module, inputs: Any, task: str = "image_cls") -> AnalysisSpec:
    """The spec ``task`` gives for this model and input (``common.task.Task.analysis_spec``); AnalysisUnavailable
    when the task has none."""
    from common.task import get_task

    return get_task(task).analysis_spec(model, inputs)


def _select(spec: AnalysisSpec, stages: Sequence[str] | None) -> AnalysisSpec:
    if stages is None:
        return spec
    unknown = [s for s in stages if s not in spec.stages and s not in spec.attention]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; this model has: {', '.join(spec.names())}")
    return AnalysisSpec(
        stages={k: v for k, v in spec.stages.items() if k in stages},
        attention={k: v for k, v in spec.attention.items() if k in stages},
        layout=spec.layout, num_prefix_tokens=spec.num_prefix_tokens, notes=spec.notes,
    )


def capture_tokens(model: nn.Module, inputs: Any, spec: AnalysisSpec) -> Capture:
    """One no-grad eval forward recording every stage's tokens and CLS attention rows of ``spec``."""
    return run_with_hooks(model, inputs, spec.stages, spec.attention, spec.positions)


def maps_from_capture(capture: Capture, spec: AnalysisSpec, measure: str = "magnitude") -> dict[str, torch.Tensor]:
    """Per-stage maps in [0, 1]: ``measure`` of the spatial tokens; CLS attention summed over heads.

    Shapes follow ``spec.layout``: (B, H_tok, W_tok) for patches, (B, T_tok, H_tok, W_tok) for tubelets,
    (B, G) for point groups (positions in ``capture.positions``).
    """
    prefix = spec.num_prefix_tokens
    maps: dict[str, torch.Tensor] = {}
    for stage, tokens in capture.features.items():
        maps[stage] = spec.layout.to_map(token_activation(tokens[:, prefix:], measure)).cpu()
    for name, row in capture.cls_attention.items():
        summed = row.sum(dim=1)[:, prefix:]  # sum over heads (paper: attention pseudo-masks sum all heads)
        maps[name] = spec.layout.to_map(minmax_normalise(summed.double()).float()).cpu()
    return maps


def activation_maps(model: nn.Module, images: torch.Tensor, stages: Sequence[str] | None = None,
                    measure: str = "magnitude", spec: AnalysisSpec | None = None,
                    task: str = "image_cls") -> dict[str, torch.Tensor]:
    """Token-activation maps of ``images`` at each stage: dict[stage, (B, H_tok, W_tok)] for image models.

    Args:
        model: e.g. an image_cls ViT with (or without) ``self.llm``; run in eval mode without gradients.
        images: model input, e.g. (B, C, H, W) normalised images.
        stages: subset of ``encoder, in_proj, llm_attn, llm_ffn, out_proj, cls_attn_encoder, cls_attn_llm``
            (those the model has); None for all.
        measure: ``magnitude`` or ``frequency`` (paper §6); attention stages ignore it.
        spec: a ready ``AnalysisSpec``; by default the built-in one of ``task``.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
    spec = _select(spec or build_spec(model, images, task), stages)
    return maps_from_capture(capture_tokens(model, images, spec), spec, measure)
