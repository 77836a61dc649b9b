"""EMA of the trainable weights (timm ``ModelEmaV3``) that shares, never copies, the frozen parameters.

``ModelEmaV3`` deep-copies the model and averages ``state_dict()`` entries. The copy made here hands the frozen
parameters (``requires_grad=False``) through the deepcopy memo, so the EMA module points at the very same
tensors: a frozen LLM block costs no extra memory, and since the frozen LLM weights are not in ``state_dict()``
they are neither averaged nor saved with the EMA.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn


class _ShareFrozenOnCopy:
    """Stands in for the model inside ``ModelEmaV3.__init__``: its deepcopy keeps frozen parameters shared."""

    def __init__(self, model: nn.Module):
        self._model = model

    def __deepcopy__(self, memo: dict[int, Any]) -> nn.Module:
        for param in self._model.parameters():
            if not param.requires_grad:
                memo[id(param)] = param
        return copy.deepcopy(self._model, memo)

    def parameters(self, recurse: bool = True):  # ModelEmaV3 reads the model's device from here
        return self._model.parameters(recurse)


def create_ema(model: nn.Module, decay: float, warmup: bool = False) -> Any:
    """A ``timm.utils.ModelEmaV3`` of ``model`` (the unwrapped model, after DDP synchronised its weights)."""
    from timm.utils.model_ema import ModelEmaV3

    return ModelEmaV3(_ShareFrozenOnCopy(model), decay=decay, use_warmup=warmup)
