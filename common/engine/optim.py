"""Optimizer and LR schedule over the trainable parameters only.

Parameter groups carry ``lr_scale`` (adapter LR multipliers, layer decay, a no-decay multiplier). The schedule is a
timm scheduler stepped once per optimizer update (``step_update``), or once per epoch with ``--sched-interval
epoch`` (DeiT). By default timm's ``Scheduler.update_groups`` sets ``lr = schedule_value * group["lr_scale"]`` for
every group that has the key, so the multiplier survives every step, warmup and floor included
(``--lr-bounds scaled``); ``build_optimizer`` also stores ``initial_lr`` = the base LR in each group (timm keeps an
existing ``initial_lr``), so the scheduler's base value is the unscaled LR and the scale is not applied twice; before
any scheduler step the groups already hold ``base_lr * lr_scale``. With ``--lr-bounds absolute`` each group instead
gets its own base LR (``initial_lr = lr * lr_scale``, no ``lr_scale``), so timm warms every group up from the same
absolute ``--warmup-lr`` and decays it to the same ``--min-lr`` (LM4VE's point-cloud runs).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

log = logging.getLogger(__name__)

LayerDecay = tuple[float, Callable[[str], int], int]


def parse_lr_multipliers(items: Iterable[str] | Mapping[str, float] | None) -> dict[str, float]:
    """``["*.in_proj.*=10", "head=2"]`` (or a mapping) -> ``{pattern: factor}``, order kept."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): float(v) for k, v in items.items()}
    out: dict[str, float] = {}
    for item in items:
        pattern, sep, factor = item.rpartition("=")
        if not sep or not pattern:
            raise ConfigError(f"--lr-mult: expected PATTERN=FACTOR, got {item!r}")
        try:
            out[pattern] = float(factor)
        except ValueError:
            raise ConfigError(f"--lr-mult: factor of {item!r} is not a number") from None
    return out


def name_matches(name: str, pattern: str) -> bool:
    """fnmatch on the full parameter name (``*`` crosses dots), or ``pattern`` is a module prefix of it."""
    return fnmatch.fnmatchcase(name, pattern) or name == pattern or name.startswith(pattern + ".")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names (or patterns) from every submodule's ``no_weight_decay()`` (timm convention), prefixed by its path."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n in fn())
    return names


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr_multipliers: Mapping[str, float] | None = None,
    layer_decay: LayerDecay | None = None,
    no_decay_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """Group the trainable parameters by (weight decay on/off, LR scale).

    Args:
        model: the unwrapped model; parameters with ``requires_grad=False`` (the frozen LLM block) are skipped.
        weight_decay: decay of the decayed group. No decay for ndim <= 1 tensors (norms, biases, scalars),
            names ending in ``.bias`` and names from ``no_weight_decay()`` (tokens, position embeddings).
        lr_multipliers: ``{pattern: factor}``; the first pattern matching a name (see ``name_matches``) wins.
        layer_decay: ``(decay, layer_id_fn, num_layers)``: VideoMAE/BEiT layer-wise decay,
            scale ``decay ** (num_layers + 1 - layer_id_fn(name))`` with ids in ``[0, num_layers + 1]``.
        no_decay_lr_mult: extra factor for the no-weight-decay group.

    Returns:
        groups with ``params``, ``param_names``, ``weight_decay`` and ``lr_scale`` (product of all factors).
    """
    skip = no_weight_decay_names(model)
    multipliers = dict(lr_multipliers or {})
    used: set[str] = set()
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(name_matches(name, s) for s in skip)
        scale = no_decay_lr_mult if no_decay else 1.0
        if layer_decay is not None:
            decay, layer_id_fn, num_layers = layer_decay
            layer_id = layer_id_fn(name)
            if not 0 <= layer_id <= num_layers + 1:
                raise ValueError(f"layer id {layer_id} of {name} outside [0, {num_layers + 1}]")
            scale *= decay ** (num_layers + 1 - layer_id)
        for pattern, factor in multipliers.items():
            if name_matches(name, pattern):
                scale *= factor
                used.add(pattern)
                break
        group = groups.setdefault((no_decay, scale), {
            "params": [], "param_names": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale})
        group["params"].append(param)
        group["param_names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    for pattern in multipliers.keys() - used:
        log.warning("LR multiplier pattern %r matches no trainable parameter", pattern)
    return list(groups.values())


def _as_namespace(args: argparse.Namespace | Mapping[str, Any]) -> Any:
    return SimpleNamespace(**args) if isinstance(args, Mapping) else args


def build_optimizer(
    args: argparse.Namespace | Mapping[str, Any],
    model: nn.Module,
    layer_id_fn: Callable[[str], int] | None = None,
    num_layers: int | None = None,
) -> torch.optim.Optimizer:
    """``--opt`` (AdamW by default) over ``param_groups(model, ...)`` from the common flags (lr, weight_decay,
    opt_betas, opt_eps, momentum, lr_mult, no_decay_lr_mult, layer_decay). ``--layer-decay`` needs the task's
    ``layer_id_fn`` and ``num_layers``.
    """
    a = _as_namespace(args)
    decay = getattr(a, "layer_decay", None)
    layer_decay = None
    if decay is not None and decay != 1.0:
        if layer_id_fn is None or num_layers is None:
            raise ConfigError("--layer-decay is set but this task gives no layer ids (layer_id_fn/num_layers)")
        layer_decay = (decay, layer_id_fn, num_layers)
    groups = param_groups(model, a.weight_decay, parse_lr_multipliers(getattr(a, "lr_mult", None)), layer_decay,
                          getattr(a, "no_decay_lr_mult", 1.0))
    return make_optimizer(a, groups)


OPTIMIZERS = ("adamw", "adam", "sgd")


def make_optimizer(args: argparse.Namespace | Mapping[str, Any], groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """The ``--opt`` optimizer over ready parameter groups (``lr_scale`` each): AdamW (DeiT, VideoMAE, Point-BERT),
    Adam (SQA3D; weight decay as torch's L2 term) or SGD with ``--momentum``. Groups start at ``lr * lr_scale``
    with ``initial_lr = lr`` (the scheduler's base value, see the module docstring)."""
    a = _as_namespace(args)
    for group in groups:
        group["lr"] = a.lr * group["lr_scale"]
        group["initial_lr"] = a.lr  # timm's scheduler base value: the unscaled LR (it multiplies lr_scale back in)
    name = getattr(a, "opt", "adamw")
    betas = tuple(getattr(a, "opt_betas", (0.9, 0.999)))
    eps = getattr(a, "opt_eps", 1e-8)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=a.lr, betas=betas, eps=eps)
    if name == "adam":
        return torch.optim.Adam(groups, lr=a.lr, betas=betas, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=a.lr, momentum=getattr(a, "momentum", 0.9))
    raise ConfigError(f"--opt must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def split_group(groups: list[dict[str, Any]], prefix: str, lr_scale: float, weight_decay: float
                ) -> list[dict[str, Any]]:
    """``groups`` with every parameter whose name starts with ``prefix`` moved into one group of its own LR scale
    and weight decay (e.g. LM4VE's adapter group); unchanged when no name matches."""
    own: dict[str, Any] = {"params": [], "param_names": [], "weight_decay": weight_decay, "lr_scale": lr_scale}
    kept = []
    for group in groups:
        pairs = list(zip(group["param_names"], group["params"]))
        for name, param in pairs:
            if name.startswith(prefix):
                own["param_names"].append(name)
                own["params"].append(param)
        rest = [(n, p) for n, p in pairs if not n.startswith(prefix)]
        if rest:
            kept.append({**group, "param_names": [n for n, _ in rest], "params": [p for _, p in rest]})
    return kept + [own] if own["params"] else groups


def build_scheduler(args: argparse.Namespace | Mapping[str, Any], optimizer: torch.optim.Optimizer,
                    updates_per_epoch: int) -> Any:
    """timm scheduler (``--sched``, warmup, floor) over ``epochs * updates_per_epoch`` optimizer updates.

    Call ``scheduler.step_update(n)`` before update ``n`` (0-based, counted from the start of training).
    """
    from timm.scheduler import create_scheduler_v2

    a = _as_namespace(args)
    if updates_per_epoch < 1:
        raise ConfigError("the training loader yields no optimizer update per epoch (empty loader?)")
    if getattr(a, "lr_bounds", "scaled") == "absolute":
        # Each group gets its own base LR (base x multiplier) and no lr_scale: timm then computes warm-up and
        # floor per group from the absolute --warmup-lr / --min-lr.
        for group in optimizer.param_groups:
            group["lr_mult"] = scale = group.pop("lr_scale", 1.0)  # kept for the record; timm ignores the key
            group["initial_lr"] = group["lr"] = group["initial_lr"] * scale
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=a.sched, num_epochs=a.epochs, decay_epochs=getattr(a, "decay_epochs", None),
        decay_milestones=getattr(a, "decay_milestones", (30, 60)), decay_rate=getattr(a, "decay_rate", 0.1),
        min_lr=a.min_lr, warmup_lr=a.warmup_lr, warmup_epochs=a.warmup_epochs,
        step_on_epochs=per_epoch(a), updates_per_epoch=updates_per_epoch,
    )
    return scheduler


def per_epoch(args: Any) -> bool:
    """Whether the schedule steps once per epoch (``--sched-interval epoch``) instead of per optimizer update."""
    return getattr(args, "sched_interval", "update") == "epoch"


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's current value of the first group (its LR divided by its ``lr_scale``; with ``--lr-bounds
    absolute``, which drops the scale, that group's LR)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)
