"""What a task tells ``tools.analyze`` about its model (``Task.analysis_spec``): the stages whose tokens are
measured, the attention rows to read, and how tokens map onto the input ("layouts"). Plain data and builders, so a
task builds its spec importing only ``common``; ``tools.analysis`` does the hooking, measuring and drawing.

Layouts:
- ``PatchGrid``: image patches in row-major order -> maps (B, H_tok, W_tok)   (ViT; image_cls)
- ``TubeletGrid``: video tubelets in (time, row, column) order -> maps (B, T_tok, H_tok, W_tok)   (VideoMAE)
- ``GroupCentres``: one token per point group -> values (B, G); the group centres (B, G, 3) are given (``centres``,
  e.g. computed by the task from the input) or read during the same forward pass from the output of a module
  (Point-BERT-style grouping modules return ``(neighbourhoods, centres)``, hence ``output_index=1``) or, with
  ``from_input=True``, from a module's first input (e.g. the position embedding MLP that takes the centres).
Tokens before the spatial ones (CLS, registers) are removed by the caller (``AnalysisSpec.num_prefix_tokens``).

Stages (paper §6, in this order): ``encoder`` (output of the visual encoder's last block; with image_cls's
``llm_position`` head/middle the LLM runs before that block), ``in_proj`` (F_L1),
``llm_attn`` / ``llm_ffn`` (outputs of the LLM block's attention and FFN, before their residual adds),
``out_proj`` (F_L2); with several LLM blocks the LLM stages are ``llm{i}_attn`` / ``llm{i}_ffn``; the MLP control
has a ``mlp`` stage instead. Attention rows: ``cls_attn_encoder`` (encoder's last block) and ``cls_attn_llm``
(the LLM block; ``cls_attn_llm{i}`` for several).

Builders: ``vit_spec`` (timm ViTs: image_cls), ``video_spec`` (VideoMAE-style tubelets, no CLS token, so no
attention rows), or ``spec_from_parts`` with the model's own layout, e.g. ``GroupCentres(model.group_divider)``
for Point-BERT-style point clouds (one token per point group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class AttentionSite:
    """An attention module whose ``query_index`` row is wanted; the head counts are fallbacks for recomputing the row
    from the module's q/k projections (``tools.analysis.capture``)."""

    module: nn.Module
    query_index: int = 0
    n_heads: int | None = None
    n_kv_heads: int | None = None


@dataclass(frozen=True)
class PatchGrid:
    """Row-major H_tok x W_tok patch tokens."""

    height: int
    width: int

    @property
    def num_tokens(self) -> int:
        return self.height * self.width

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, H_tok, W_tok)."""
        _check_count(values, self.num_tokens, self)
        return values.reshape(values.shape[0], self.height, self.width)


@dataclass(frozen=True)
class TubeletGrid:
    """T_tok x H_tok x W_tok tubelet tokens, time-major then row-major (VideoMAE's patch-embedding order)."""

    frames: int
    height: int
    width: int

    @property
    def num_tokens(self) -> int:
        return self.frames * self.height * self.width

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, T_tok, H_tok, W_tok)."""
        _check_count(values, self.num_tokens, self)
        return values.reshape(values.shape[0], self.frames, self.height, self.width)


@dataclass(frozen=True, eq=False)
class GroupCentres:
    """One token per point group; positions (B, G, 3): ``centres`` if given, else ``source``'s output
    ``[output_index]`` (or its first input with ``from_input``) during the analysed forward pass.

    ``up_axis`` is the coordinate drawn vertically: 1 (y, ModelNet / ScanObjectNN), 2 (z, ScanNet), or None for a
    planar scene drawn top-down in x, y (driving maps)."""

    source: nn.Module | None = None
    output_index: int = 1
    centres: torch.Tensor | None = None
    from_input: bool = False
    up_axis: int | None = 1

    def __post_init__(self) -> None:
        if self.source is None and self.centres is None:
            raise ValueError("GroupCentres needs the centres or a source module to read them from")
        if self.up_axis not in (None, 0, 1, 2):
            raise ValueError(f"GroupCentres.up_axis must be 0, 1, 2 or None (top-down), got {self.up_axis!r}")

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """(B, G) -> (B, G): point tokens have no grid; draw them at ``Capture.positions``."""
        return values


Layout = PatchGrid | TubeletGrid | GroupCentres


def _check_count(values: torch.Tensor, expected: int, layout: object) -> None:
    if values.dim() != 2 or values.shape[1] != expected:
        raise ValueError(f"{layout} expects (batch, {expected}) token values, got {tuple(values.shape)}; "
                         "is num_prefix_tokens right?")


@dataclass
class AnalysisSpec:
    """Everything the analysis needs to know about a model and its input."""

    stages: dict[str, nn.Module]
    attention: dict[str, AttentionSite]
    layout: Layout
    num_prefix_tokens: int = 1  # leading non-spatial tokens (CLS, registers), dropped before measuring
    notes: list[str] = field(default_factory=list)

    @property
    def positions(self) -> GroupCentres | None:
        return self.layout if isinstance(self.layout, GroupCentres) else None

    def names(self) -> list[str]:
        """Stage names then attention names, in drawing order."""
        return list(self.stages) + list(self.attention)


def find_adapter(model: nn.Module) -> nn.Module | None:
    """The LLM adapter: ``model.llm`` if set, else the first submodule with ``in_proj`` and ``out_proj``."""
    adapter = getattr(model, "llm", None)
    if isinstance(adapter, nn.Module) and hasattr(adapter, "in_proj"):
        return adapter
    for module in model.modules():
        if module is not model and hasattr(module, "in_proj") and hasattr(module, "out_proj"):
            if isinstance(module.in_proj, nn.Module) and isinstance(module.out_proj, nn.Module):
                return module
    return None


def adapter_parts(adapter: nn.Module, query_index: int | None) -> tuple[dict[str, nn.Module], dict[str, AttentionSite]]:
    """Stages and attention sites of an ``LLMAdapter``: in_proj -> lm.blocks[i].attn/.ffn (or mlp) -> out_proj."""
    stages: dict[str, nn.Module] = {"in_proj": adapter.in_proj}
    sites: dict[str, AttentionSite] = {}
    lm = getattr(adapter, "lm", None)
    if isinstance(lm, nn.Module):
        config = getattr(lm, "config", None)
        n_heads = getattr(config, "n_heads", None)
        n_kv = getattr(config, "n_kv_heads", None)
        blocks = list(lm.blocks)
        for index, block in enumerate(blocks):
            tag = "" if len(blocks) == 1 else str(index)
            stages[f"llm{tag}_attn"] = block.attn
            stages[f"llm{tag}_ffn"] = block.ffn
            if query_index is not None:
                sites[f"cls_attn_llm{tag}"] = AttentionSite(block.attn, query_index, n_heads, n_kv)
    elif isinstance(getattr(adapter, "mlp", None), nn.Module):
        stages["mlp"] = adapter.mlp
    stages["out_proj"] = adapter.out_proj
    return stages, sites


def spec_from_parts(encoder_last_block: nn.Module, layout: Layout, adapter: nn.Module | None = None,
                    num_prefix_tokens: int = 1, cls_index: int | None = 0,
                    encoder_attention: nn.Module | None = None, encoder_heads: int | None = None) -> AnalysisSpec:
    """Generic spec: any encoder whose last block outputs (B, N, C) tokens, optionally followed by an adapter.

    Args:
        encoder_last_block: its output is the ``encoder`` stage.
        layout: how the N - num_prefix_tokens spatial tokens map to positions.
        adapter: the ``LLMAdapter`` (or None for a baseline model).
        num_prefix_tokens: leading non-spatial tokens.
        cls_index: position of the CLS token for CLS->token attention; None: no attention rows.
        encoder_attention: attention module of the encoder's last block (CLS row read from it).
        encoder_heads: head count fallback for ``encoder_attention`` if it has no ``num_heads`` attribute.
    """
    stages: dict[str, nn.Module] = {"encoder": encoder_last_block}
    sites: dict[str, AttentionSite] = {}
    if cls_index is not None and encoder_attention is not None:
        sites["cls_attn_encoder"] = AttentionSite(encoder_attention, cls_index, encoder_heads)
    if adapter is not None:
        adapter_stages, adapter_sites = adapter_parts(adapter, cls_index)
        stages.update(adapter_stages)
        sites.update(adapter_sites)
    return AnalysisSpec(stages=stages, attention=sites, layout=layout, num_prefix_tokens=num_prefix_tokens)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def vit_spec(model: nn.Module, input_shape: Sequence[int]) -> AnalysisSpec:
    """Spec of a timm ``VisionTransformer`` (optionally with ``self.llm``) for (B, C, H, W) inputs."""
    for attribute in ("blocks", "patch_embed"):
        if not hasattr(model, attribute):
            raise ValueError(f"{type(model).__name__} is not a timm VisionTransformer (no .{attribute})")
    if len(input_shape) != 4:
        raise ValueError(f"image input must be (B, C, H, W), got shape {tuple(input_shape)}")
    patch_h, patch_w = _pair(model.patch_embed.patch_size)
    layout = PatchGrid(int(input_shape[2]) // patch_h, int(input_shape[3]) // patch_w)
    has_cls = getattr(model, "cls_token", None) is not None
    last = model.blocks[-1]
    return spec_from_parts(
        encoder_last_block=last,
        layout=layout,
        adapter=find_adapter(model),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1 if has_cls else 0)),
        cls_index=0 if has_cls else None,
        encoder_attention=getattr(last, "attn", None),
    )


def video_spec(model: nn.Module, input_shape: Sequence[int]) -> AnalysisSpec:
    """Spec of a VideoMAE-style ViT (``blocks``, ``patch_embed.tubelet_size``/``patch_size``) for (B, C, T, H, W).

    VideoMAE fine-tuning pools by mean and has no CLS token: no attention rows, no prefix tokens.
    """
    embed = getattr(model, "patch_embed", None)
    if not hasattr(model, "blocks") or embed is None or not hasattr(embed, "tubelet_size"):
        raise ValueError(f"{type(model).__name__} is not a VideoMAE-style ViT (needs .blocks and "
                         ".patch_embed.tubelet_size)")
    if len(input_shape) != 5:
        raise ValueError(f"video input must be (B, C, T, H, W), got shape {tuple(input_shape)}")
    patch_h, patch_w = _pair(embed.patch_size)
    layout = TubeletGrid(int(input_shape[2]) // int(embed.tubelet_size), int(input_shape[3]) // patch_h,
                         int(input_shape[4]) // patch_w)
    has_cls = getattr(model, "cls_token", None) is not None
    return spec_from_parts(model.blocks[-1], layout, find_adapter(model), num_prefix_tokens=int(has_cls),
                           cls_index=0 if has_cls else None, encoder_attention=getattr(model.blocks[-1], "attn", None))
