"""One reader for the weight files the tasks start from or evaluate (released Point-BERT / VideoMAE / DeiT /
LM4VisualEncoding checkpoints): ``torch.load(weights_only=True)`` with a named allow-list, the weights found under
the first present key (``model``, ``module``, ``base_model``... or the file itself), ``module.`` prefixes of
(Distributed)DataParallel removed. Every failure is a one-line ``CheckpointError`` naming the file.

    state, key = read_state_dict("Point-BERT.pth", keys=("base_model", "model"))
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

# Non-tensor classes the released files pickle next to their weights: DeiT's / VideoMAE's / LM4VE's run args.
ALLOWED_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
DEFAULT_KEYS = ("model", "module", "base_model")
_REFUSED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def refused_global(message: str) -> str | None:
    """The ``module.Class`` torch's ``weights_only`` unpickler refused, read off its message (None if another
    error)."""
    match = _REFUSED.search(message)
    return match.group(1) if match else None


def torch_load(path: str | os.PathLike, allow: Sequence[type] = ALLOWED_GLOBALS) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, ``allow`` the only classes besides tensors and plain values.

    Raises ``CheckpointError``: file missing; truncated or not a torch file; a pickled class outside ``allow``
    (named, one line: it is not unpickled, as unpickling runs code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        name = refused_global(str(e))
        if name is not None:
            allowed = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in allow) or "no class"
            raise CheckpointError(f"{path}: holds a pickled {name}, which is not unpickled (unpickling runs code; "
                                  f"weights_only loading allows tensors, plain values and {allowed})") from e
        raise CheckpointError(f"cannot read checkpoint {path}: UnpicklingError: {_first_line(e)}") from e
    except Exception as e:  # truncated zip, foreign file: one line naming the file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {_first_line(e)}") from e


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Sequence[str] = ("module.",),
                   repeat: bool = True) -> dict[str, Any]:
    """Keys with their leading ``prefixes`` removed: all of them (``module.module.x`` -> ``x``), or with
    ``repeat=False`` only the first that matches, once."""
    out = {}
    for name, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in prefixes:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], repeat
                    break
        out[name] = value
    return out


def read_state_dict(path: str | os.PathLike, keys: Sequence[str] = DEFAULT_KEYS, *, allow_bare: bool = True,
                    allow: Sequence[type] = ALLOWED_GLOBALS) -> tuple[dict[str, torch.Tensor], str | None]:
    """(weights, the key they sat under) of a weight file: the first of ``keys`` holding a mapping, else (with
    ``allow_bare``) the file's own dict of tensors (key None). Every value must be a tensor; ``module.`` prefixes
    are removed."""
    path = Path(path)
    ckpt = torch_load(path, allow)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict of weights, got {type(ckpt).__name__}")
    key = next((k for k in keys if isinstance(ckpt.get(k), Mapping)), None)
    if key is not None:
        weights = ckpt[key]
    elif allow_bare and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        weights = ckpt
    else:
        raise CheckpointError(f"{path}: no {' / '.join(repr(k) for k in keys)} state dict"
                              + (" and not a state dict itself" if allow_bare else "")
                              + f"; keys: {sorted(map(str, ckpt))[:8]}")
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: '{key or 'weights'}' entry '{name}' is not a tensor")
    return strip_prefixes(weights), key
