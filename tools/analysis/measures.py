"""Token activation measures of the information-filtering analysis (paper §6 / appendix Fig. E).

For the spatial tokens ``x`` of one image (N tokens, C channels):
  magnitude_i = || x_i - mean_j x_j ||_2
  frequency_i = || angle(FFT(x_i)) - mean_j angle(FFT(x_j)) ||_2      (FFT over the C channels)
each then min-max normalised to [0, 1] over the image's tokens. The "mean token" is taken over the spatial
tokens only (the CLS/register tokens are dropped before measuring), since the map is drawn over those.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MEASURES = ("magnitude", "frequency")


def magnitude(tokens: torch.Tensor) -> torch.Tensor:
    """L2 norm of each token minus the image's mean token: (B, N, C) -> (B, N)."""
    x = tokens.double()
    return (x - x.mean(dim=1, keepdim=True)).norm(dim=-1)


def frequency(tokens: torch.Tensor) -> torch.Tensor:
    """L2 norm of each token's FFT phase angles minus the image's mean angle vector: (B, N, C) -> (B, N)."""
    angles = torch.fft.fft(tokens.double(), dim=-1).angle()
    return (angles - angles.mean(dim=1, keepdim=True)).norm(dim=-1)


def minmax_normalise(values: torch.Tensor) -> torch.Tensor:
    """Per-row min-max to [0, 1]: (B, N) -> (B, N); a constant row becomes all zeros."""
    low = values.amin(dim=1, keepdim=True)
    span = values.amax(dim=1, keepdim=True) - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (values - low) / safe, torch.zeros_like(values))


_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"magnitude": magnitude, "frequency": frequency}


def token_activation(tokens: torch.Tensor, measure: str) -> torch.Tensor:
    """``measure`` ('magnitude' | 'frequency') of (B, N, C) tokens, min-max normalised per image, float32 (B, N)."""
    if measure not in _FUNCTIONS:
        raise ValueError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be (batch, tokens, channels), got shape {tuple(tokens.shape)}")
    return minmax_normalise(_FUNCTIONS[measure](tokens)).float()
