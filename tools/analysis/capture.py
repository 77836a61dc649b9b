"""One forward pass with hooks: token features at each analysis stage and CLS->token attention rows.

Attention weights are not materialised by fused attention (SDPA), so they are recomputed from q and k:
  1. while a watched attention module runs, ``torch.nn.functional.scaled_dot_product_attention`` is wrapped
     and its first call's ``query``/``key``/mask/scale are used (exact for timm's ``Attention`` and for any
     block that calls SDPA through ``F.``, whatever its weight layout: fused qkv, GQA, biases, q/k norms);
  2. otherwise q and k are recomputed from the module's input with its own projections: ``qkv`` (timm/fused,
     optional ``q_norm``/``k_norm``) or ``wq``/``wk`` (Meta naming) or ``q_proj``/``k_proj`` (HF naming).
Only the query row of the CLS token is formed: softmax(q_cls k^T * scale), per head -> (B, heads, N).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.analysis import AttentionSite, GroupCentres


@dataclass
class Capture:
    """What one forward pass recorded."""

    features: dict[str, torch.Tensor] = field(default_factory=dict)  # stage -> (B, N, C), all tokens
    cls_attention: dict[str, torch.Tensor] = field(default_factory=dict)  # site -> (B, heads, N), all key tokens
    positions: torch.Tensor | None = None  # GroupCentres layouts: (B, G, 3)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"hooked module returned {type(output).__name__}, expected a tensor")


def cls_row(query: torch.Tensor, key: torch.Tensor, query_index: int, scale: float | None = None,
            attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """Softmax attention row of one query position, per head: q (B, H, N, D), k (B, H_kv, N, D) -> (B, H, N)."""
    query, key = query.float(), key.float()
    if key.shape[-3] != query.shape[-3]:  # grouped-query attention: share each k head across its q heads
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scale = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    q = query[..., query_index: query_index + 1, :]
    scores = (q @ key.transpose(-2, -1)) * scale  # (B, H, 1, N)
    if attn_mask is not None:
        mask = attn_mask[..., query_index: query_index + 1, :] if attn_mask.shape[-2] > 1 else attn_mask
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    if is_causal:
        scores[..., query_index + 1:] = float("-inf")
    return scores.softmax(dim=-1).squeeze(-2)


class _SDPATap:
    """Wraps F.scaled_dot_product_attention while watched modules run; records the first call per module."""

    def __init__(self) -> None:
        self.active: list[int] = []  # ids of watched modules currently inside forward
        self.records: dict[int, dict[str, Any]] = {}
        self._original = None

    def __enter__(self) -> _SDPATap:
        self._original = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._call
        return self

    def __exit__(self, *exc: object) -> None:
        F.scaled_dot_product_attention = self._original

    def _call(self, query, key, value, *args, **kwargs):  # same signature as F.scaled_dot_product_attention
        if self.active and self.active[-1] not in self.records:
            names = ("attn_mask", "dropout_p", "is_causal", "scale")
            bound = dict(zip(names, args))
            bound.update(kwargs)
            self.records[self.active[-1]] = {
                "query": query.detach(), "key": key.detach(), "attn_mask": bound.get("attn_mask"),
                "is_causal": bool(bound.get("is_causal", False)), "scale": bound.get("scale"),
            }
        return self._original(query, key, value, *args, **kwargs)


def _module_heads(module: nn.Module, site: AttentionSite) -> tuple[int, int]:
    n_heads = site.n_heads
    for name in ("num_heads", "n_heads", "n_head", "num_attention_heads"):
        if n_heads is None and isinstance(getattr(module, name, None), int):
            n_heads = getattr(module, name)
    n_kv = site.n_kv_heads
    for name in ("num_kv_heads", "n_kv_heads", "num_key_value_heads"):
        if n_kv is None and isinstance(getattr(module, name, None), int):
            n_kv = getattr(module, name)
    if n_heads is None:
        raise ValueError(f"cannot tell the number of heads of {type(module).__name__}")
    return n_heads, n_kv or n_heads


def recompute_cls_row(module: nn.Module, x: torch.Tensor, site: AttentionSite) -> torch.Tensor:
    """CLS row from the attention module's input and its own q/k projections (layouts listed in the module doc)."""
    batch, tokens, _ = x.shape
    scale = getattr(module, "scale", None)
    if isinstance(getattr(module, "qkv", None), nn.Module):
        n_heads, n_kv = _module_heads(module, site)
        qkv = module.qkv(x)
        head_dim = getattr(module, "head_dim", None) or qkv.shape[-1] // (n_heads + 2 * n_kv)
        q, k, _ = qkv.split([n_heads * head_dim, n_kv * head_dim, n_kv * head_dim], dim=-1)
    else:
        pairs = [("wq", "wk"), ("q_proj", "k_proj")]
        found = next(((getattr(module, a), getattr(module, b)) for a, b in pairs
                      if isinstance(getattr(module, a, None), nn.Module)), None)
        if found is None:
            raise ValueError(f"{type(module).__name__}: no SDPA call seen and no qkv / wq,wk / q_proj,k_proj "
                             "projections to recompute attention from")
        n_heads, n_kv = _module_heads(module, site)
        q, k = found[0](x), found[1](x)
        head_dim = q.shape[-1] // n_heads
    q = q.reshape(batch, tokens, n_heads, head_dim).transpose(1, 2)
    k = k.reshape(batch, tokens, n_kv, head_dim).transpose(1, 2)
    if isinstance(getattr(module, "q_norm", None), nn.Module):
        q = module.q_norm(q)
    if isinstance(getattr(module, "k_norm", None), nn.Module):
        k = module.k_norm(k)
    return cls_row(q, k, site.query_index, scale=scale if isinstance(scale, float) else None)


@contextmanager
def _hooks(stages: dict[str, nn.Module], sites: dict[str, AttentionSite], positions: GroupCentres | None,
           capture: Capture) -> Iterator[None]:
    tap = _SDPATap()
    inputs: dict[str, torch.Tensor] = {}

    def stage_hook(name: str):
        def hook(_module, _args, output):  # a module run several times in one forward: its first call
            capture.features.setdefault(name, _first_tensor(output).detach().float())
        return hook

    def site_pre_hook(name: str, module: nn.Module):
        def hook(_module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            inputs[name] = x.detach()
            tap.active.append(id(module))
        return hook

    def site_post_hook(name: str, module: nn.Module):
        def hook(_module, _args, _output):
            tap.active.pop()
            record = tap.records.pop(id(module), None)
            site = sites[name]
            if record is not None:
                row = cls_row(record["query"], record["key"], site.query_index, record["scale"],
                              record["attn_mask"], record["is_causal"])
            else:
                try:
                    row = recompute_cls_row(module, inputs[name], site)
                except ValueError as error:
                    warnings.warn(f"CLS attention '{name}' skipped: {error}", stacklevel=2)
                    return
            capture.cls_attention[name] = row.detach()
        return hook

    def positions_hook(_module, args, output):
        found = args[0] if positions.from_input else output[positions.output_index]
        capture.positions = found.detach().float()

    with ExitStack() as stack:
        for name, module in stages.items():
            stack.callback(module.register_forward_hook(stage_hook(name)).remove)
        for name, site in sites.items():
            pre = site.module.register_forward_pre_hook(site_pre_hook(name, site.module), with_kwargs=True)
            stack.callback(pre.remove)
            stack.callback(site.module.register_forward_hook(site_post_hook(name, site.module)).remove)
        if positions is not None and positions.centres is not None:
            capture.positions = torch.as_tensor(positions.centres).detach().float()
        elif positions is not None:
            stack.callback(positions.source.register_forward_hook(positions_hook).remove)
        stack.enter_context(tap)
        yield


def run_with_hooks(model: nn.Module, inputs: Any, stages: dict[str, nn.Module],
                   sites: dict[str, AttentionSite] | None = None, positions: GroupCentres | None = None) -> Capture:
    """Forward ``model(inputs)`` in eval mode without gradients, recording ``stages`` outputs and CLS rows."""
    capture = Capture()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _hooks(stages, sites or {}, positions, capture):
            model(inputs)
    finally:
        model.train(was_training)
    missing = [name for name in stages if name not in capture.features]
    if missing:
        raise RuntimeError(f"stage(s) {', '.join(missing)} never ran in the forward pass")
    return capture
