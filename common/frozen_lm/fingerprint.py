"""Identify the frozen LM(s) inside a model, so a training checkpoint that stores only trainable weights can
re-attach the same frozen block on resume and refuse a different one."""

from __future__ import annotations

from torch import nn

from .model import FrozenLM

# Fingerprint entries that may legitimately differ between runs of the same experiment.
IGNORED_KEYS = ("path", "dtype")


def lm_fingerprints(model: nn.Module) -> dict[str, dict]:
    """``{module_name: fingerprint}`` for every FrozenLM inside ``model`` (``""`` if ``model`` is one)."""
    return {name: dict(module.fingerprint) for name, module in model.named_modules() if isinstance(module, FrozenLM)}


def check_fingerprints(saved: dict, model: nn.Module) -> None:
    """Raise ValueError naming the first difference between ``saved`` (from :func:`lm_fingerprints` at save
    time) and the LMs in ``model``. The checkpoint path and storage dtype are not compared (a moved file or
    another dtype still holds the same weights); format, family, layers, final norm and the tensor hash are."""
    current = lm_fingerprints(model)
    for name in sorted(set(saved) | set(current)):
        if name not in current:
            raise ValueError(f"checkpoint has a frozen LM at '{name}' but the model has none there")
        if name not in saved:
            raise ValueError(f"model has a frozen LM at '{name}' but the checkpoint records none")
        old, new = saved[name], current[name]
        for key in sorted((set(old) | set(new)) - set(IGNORED_KEYS)):
            if old.get(key) != new.get(key):
                raise ValueError(f"frozen LM '{name}' differs from the checkpoint's: {key} was {old.get(key)!r}, "
                                 f"now {new.get(key)!r} (was built from {old.get('path', old.get('source'))!r})")
