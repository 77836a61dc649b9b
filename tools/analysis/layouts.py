"""Token -> position mappings ("layouts") given by each task for drawing per-token values.

- ``PatchGrid``: image patches in row-major order -> maps (B, H_tok, W_tok)   (ViT; image_cls)
- ``TubeletGrid``: video tubelets in (time, row, column) order -> maps (B, T_tok, H_tok, W_tok)   (VideoMAE)
- ``GroupCentres``: one token per point group -> values (B, G); the group centres (B, G, 3) are read from the
  output of a module of the model during the same forward pass (Point-BERT's grouping module returns
  ``(neighbourhoods, centres)``, hence ``output_index=1``).
Tokens before the spatial ones (CLS, registers) are removed by the caller (``AnalysisSpec.num_prefix_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
    """One token per point group; positions come from ``source``'s output ``[output_index]`` (B, G, 3)."""

    source: nn.Module
    output_index: int = 1

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """(B, G) -> (B, G): point tokens have no grid; draw them at ``Capture.positions``."""
        return values


Layout = PatchGrid | TubeletGrid | GroupCentres


def _check_count(values: torch.Tensor, expected: int, layout: object) -> None:
    if values.dim() != 2 or values.shape[1] != expected:
        raise ValueError(f"{layout} expects (batch, {expected}) token values, got {tuple(values.shape)}; "
                         "is num_prefix_tokens right?")
