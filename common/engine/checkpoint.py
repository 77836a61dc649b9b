"""Checkpoints: atomic writes, trainable-only weights, frozen-LM fingerprints, exact resume.

A checkpoint is a dict of tensors and plain values (loadable with ``torch.load(weights_only=True)``)::

    format, version, epoch (last completed, 0-based), model, optimizer, scheduler, scaler, ema,
    config (resolved run config), rng (one state per rank), lm_fingerprints, best {metric, mode, value, epoch}

``model`` and ``ema`` hold ``model.state_dict()``, which already leaves out frozen LLM weights
(``common.frozen_lm`` contract); ``trainable_state_dict`` refuses a state that still contains one. Frozen blocks
are rebuilt from their source on load and ``lm_fingerprints`` proves it is the same source.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "frozen-lm-vision/engine-checkpoint"
VERSION = 1
LATEST_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"


def save(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically: temp file in the same directory, fsync, ``os.replace``, fsync the directory.

    A crash at any point leaves the previous file at ``path`` intact (and at worst a stray ``.*.tmp-*`` file).
    """
    path = Path(path)
    _check_plain(state, "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_PLAIN = (bool, int, float, str, type(None), torch.Tensor, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would refuse, naming where it sits."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{where}: key {k!r} of type {type(k).__name__} cannot be saved")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise CheckpointError(f"{where}: {type(value).__name__} cannot be loaded with weights_only=True")


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint on CPU with ``weights_only=True``; a missing or unreadable file is a ``CheckpointError``."""
    from .state_dict import torch_load

    path = Path(path)
    state = torch_load(path)  # truncated / foreign files: one clear line instead of a pickle traceback
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a frozen-lm-vision engine checkpoint")
    return state


def _frozen_lm_api():
    # Imported lazily: the engine must not pull model code in at import time.
    from common.frozen_lm import check_fingerprints, lm_fingerprints

    return lm_fingerprints, check_fingerprints


def frozen_lm_param_names(model: nn.Module) -> set[str]:
    """Full names of the frozen parameters inside every FrozenLM of ``model``."""
    lm_fingerprints, _ = _frozen_lm_api()
    names = set()
    for module_name in lm_fingerprints(model):
        module = model.get_submodule(module_name)
        prefix = f"{module_name}." if module_name else ""
        names.update(prefix + n for n, p in module.named_parameters() if not p.requires_grad)
    return names


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()``, checked to hold no frozen FrozenLM weight (those are reloaded from their source)."""
    state = model.state_dict()
    leaked = sorted(frozen_lm_param_names(model) & state.keys())
    if leaked:
        raise CheckpointError(f"frozen LLM weights would be saved: {', '.join(leaked[:5])}"
                              + (f" (+{len(leaked) - 5} more)" if len(leaked) > 5 else ""))
    return state


def lm_fingerprints_of(model: nn.Module) -> dict[str, Any]:
    """``common.frozen_lm.lm_fingerprints(model)``: which LLM checkpoint/layers each frozen block came from."""
    lm_fingerprints, _ = _frozen_lm_api()
    return lm_fingerprints(model)


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                     may_miss: tuple[str, ...] = (), optional_suffixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``state`` strictly; missing, unexpected or mis-shaped tensors are a one-line ``CheckpointError``
    naming the keys. The only allowances, by name: model keys starting with ``may_miss`` may be absent (they keep
    their initialisation; returned, sorted) and so may keys ending with ``optional_suffixes`` (e.g. BatchNorm's
    ``.num_batches_tracked``, which torch itself restarts at 0 for old files)."""
    current = model.state_dict()
    absent = sorted(k for k in current.keys() - state.keys() if not k.endswith(optional_suffixes))
    allowed = [k for k in absent if k.startswith(may_miss)]
    problems = []
    for label, keys in (("missing", [k for k in absent if k not in allowed]),
                        ("unexpected", sorted(state.keys() - current.keys())),
                        ("shape differs", sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(current[k].shape)}"
                                                 for k in current.keys() & state.keys()
                                                 if state[k].shape != current[k].shape))):
        if keys:
            problems.append(f"{label}: {', '.join(keys[:4])}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""))
    if problems:
        raise CheckpointError(f"{source} does not match the model; {'; '.join(problems)}")
    strict = not (may_miss or optional_suffixes)  # else the key sets were checked just above, allowances by name
    try:
        model.load_state_dict(dict(state), strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"{source} does not match the model: {' '.join(str(e).split())}") from e
    return allowed


def check_lm(saved: Mapping[str, Any], model: nn.Module, source: str) -> None:
    """Refuse a checkpoint trained with a different frozen LLM block (``check_fingerprints``)."""
    _, check_fingerprints = _frozen_lm_api()
    try:
        check_fingerprints(dict(saved), model)
    except ValueError as e:
        raise CheckpointError(f"{source} was trained with a different frozen LLM block: {e}") from e


def resolve_resume(resume: str, output_dir: str | os.PathLike) -> Path | None:
    """``''`` -> None; ``'auto'`` -> ``output_dir/checkpoint.pth`` if it exists, else None; else that path."""
    if not resume:
        return None
    if resume == "auto":
        latest = Path(output_dir) / LATEST_NAME
        return latest if latest.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: no such file")
    return path


def build_state(
    *,
    model: nn.Module,
    epoch: int,
    config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: Any = None,
    rng: list[dict[str, Any]] | None = None,
    best: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to resume (see the module docstring); ``model`` and ``ema`` unwrapped (no DDP)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": trainable_state_dict(model),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "ema": trainable_state_dict(ema.module) if ema is not None else None,
        "config": dict(config),
        "rng": rng,
        "lm_fingerprints": lm_fingerprints_of(model),
        "best": dict(best) if best is not None else None,
    }


def restore(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: Any = None,
    rank: int = 0,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into the given objects (those passed as None are skipped) and return it.

    Checks the frozen-LM fingerprints first, then loads model/EMA strictly, the optimizer (same parameter names
    per group), scheduler and scaler, and this rank's RNG state when the checkpoint has one for it.
    """
    source = str(path)
    ckpt = load(path)
    check_lm(ckpt.get("lm_fingerprints") or {}, model, source)
    load_model_state(model, ckpt["model"], f"{source} [model]")
    if optimizer is not None:
        _load_optimizer(optimizer, ckpt.get("optimizer"), source)
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and scaler.is_enabled():
        if ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        else:
            log.warning("%s has no fp16 GradScaler state; starting the scale afresh", source)
    if ema is not None:
        if ckpt.get("ema") is not None:
            load_model_state(ema.module, ckpt["ema"], f"{source} [ema]")
        else:
            log.warning("%s has no EMA weights; the EMA starts from the loaded model", source)
            ema.set(model)
    if restore_rng and ckpt.get("rng"):
        states = ckpt["rng"]
        if rank < len(states):
            from .rng import restore_rng_state

            restore_rng_state(states[rank])
        else:
            log.warning("%s holds RNG states for %d ranks, not for rank %d; keeping the fresh seed",
                        source, len(states), rank)
    return ckpt


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any] | None, source: str) -> None:
    if saved is None:
        raise CheckpointError(f"{source} has no optimizer state to resume from")
    current = [g.get("param_names") for g in optimizer.param_groups]
    stored = [g.get("param_names") for g in saved["param_groups"]]
    if current != stored:
        for i, (a, b) in enumerate(zip(current, stored)):
            if a != b:
                diff = sorted(set(a or []) ^ set(b or []))[:3] or ["(order)"]
                raise CheckpointError(f"{source} [optimizer]: parameter group {i} differs from the model's "
                                      f"(not in both: {', '.join(diff)})")
        raise CheckpointError(f"{source} [optimizer]: {len(stored)} parameter groups, the model has {len(current)}")
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{source} [optimizer]: {e}") from e
