"""Token -> position mappings ("layouts") given by each task for drawing per-token values.

- ``PatchGrid``: image patches in row-major order -> maps (B, H_tok, W_tok)   (ViT; image_cls)
- ``TubeletGrid``: video tubelets in (time, row, column) order -> maps (B, T_tok, H_tok, W_tok)   (VideoMAE)
- ``GroupCentres``: one token per point group -> values (B, G); the group centres (B, G, 3) are given (``centres``,
  e.g. computed by the task from the input) or read during the same forward pass from the output of a module
  (Point-BERT-style grouping modules return ``(neighbourhoods, centres)``, hence ``output_index=1``) or, with
  ``from_input=True``, from a module's first input (e.g. the position embedding MLP that takes the centres).
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
    """One token per point group; positions (B, G, 3): ``centres`` if given, else ``source``'s output
    ``[output_index]`` (or its first input with ``from_input``) during the analysed forward pass."""

    source: nn.Module | None = None
    output_index: int = 1
    centres: torch.Tensor | None = None
    from_input: bool = False

    def __post_init__(self) -> None:
        if self.source is None and self.centres is None:
            raise ValueError("GroupCentres needs the centres or a source module to read them from")

    def to_map(self, values: torch.Tensor) -> torch.Tensor:
        """(B, G) -> (B, G): point tokens have no grid; draw them at ``Capture.positions``."""
        return values


Layout = PatchGrid | TubeletGrid | GroupCentres


def _check_count(values: torch.Tensor, expected: int, layout: object) -> None:
    if values.dim() != 2 or values.shape[1] != expected:
        raise ValueError(f"{layout} expects (batch, {expected}) token values, got {tuple(values.shape)}; "
                         "is num_prefix_tokens right?")
