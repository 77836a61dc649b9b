"""AdamW parameter groups of LM4VisualEncoding's point-cloud builder (``tools/builder.py``), on the engine.

Upstream Point-BERT trains every parameter at one LR. LM4VE splits them into three groups:

    no-decay  1-D tensors, biases, names with 'token'  lr x 0.1, weight decay 0  (--no-decay-lr-mult 0.1)
    llama     trainable names with 'llama' (mappers)    lr x 0.5, weight decay 0  (--adapter-lr, --adapter-weight-decay)
    decay     the rest                                  lr,       weight decay 0.05

The engine's ``optim.param_groups`` builds the first and last (``PointTransformer.no_weight_decay`` names
``cls_token``); this module moves the adapter's parameters (``llm.*``: both projections, plus the block itself
when it trains, or the MLP control's LayerNorm) into their own group with an absolute LR. The paper (C.2) gives
the projections 5e-5; the code 0.5 x 5e-4 = 2.5e-4. Both are presets; ``--adapter-lr`` unset keeps the adapter
in the ordinary groups.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from common.engine import optim
from common.engine.errors import ConfigError

ADAPTER_PREFIX = "llm."


def point_param_groups(model: nn.Module, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The engine's groups (weight decay, ``--no-decay-lr-mult``, ``--lr-mult``) with the adapter split off."""
    groups = optim.param_groups(model, args.weight_decay, optim.parse_lr_multipliers(args.lr_mult),
                                no_decay_lr_mult=args.no_decay_lr_mult)
    if args.adapter_lr is None:
        return groups
    if args.adapter_lr < 0 or args.lr <= 0:
        raise ConfigError(f"--adapter-lr {args.adapter_lr} needs a positive --lr and a non-negative value")
    # no adapter in the model (baseline): --adapter-lr has nothing to act on and the groups stay as they are
    return optim.split_group(groups, ADAPTER_PREFIX, args.adapter_lr / args.lr, args.adapter_weight_decay)


def build_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    """The engine's ``--opt`` (AdamW in every preset) over ``point_param_groups``; groups start at
    ``lr * lr_scale`` and the engine's timm schedule keeps that scale (``--lr-bounds``)."""
    return optim.make_optimizer(args, point_param_groups(model, args))
