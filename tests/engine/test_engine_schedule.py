"""The two schedule options of the engine: ``--sched-interval epoch`` (DeiT) and ``--lr-bounds absolute``
(LM4VE's point-cloud groups), against timm's scheduler driven the way the upstream loops drive it."""

from __future__ import annotations

import argparse

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from common.engine import config, optim


def _args(**over) -> argparse.Namespace:
    args = config.make_parser("t").parse_args([])
    args.epochs, args.warmup_epochs, args.lr, args.min_lr, args.warmup_lr = 6, 2, 1e-3, 1e-5, 1e-6
    for k, v in over.items():
        setattr(args, k, v)
    return args


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))


def test_epoch_interval_follows_deit_main(tmp_path):
    """DeiT: create the scheduler, train epoch e, then lr_scheduler.step(e): epoch e trains at value(max(e-1, 0))."""
    args = _args(sched_interval="epoch")
    model = _model()
    opt = optim.build_optimizer(args, model)
    sched = optim.build_scheduler(args, opt, updates_per_epoch=5)
    ref_opt = torch.optim.AdamW(_model().parameters(), lr=args.lr)
    ref = CosineLRScheduler(ref_opt, t_initial=args.epochs, lr_min=args.min_lr, warmup_lr_init=args.warmup_lr,
                            warmup_t=2)
    for epoch in range(args.epochs):
        sched.step(max(epoch - 1, 0))  # what loop.train_one_epoch does at the start of the epoch
        assert optim.base_lr(opt) == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12), epoch
        ref.step(epoch)  # DeiT, after the epoch
    per_update = optim.build_scheduler(_args(), optim.build_optimizer(_args(), model), updates_per_epoch=5)
    assert per_update.t_in_epochs is False and sched.t_in_epochs is True


def test_absolute_bounds_give_every_group_the_same_warmup_start_and_floor():
    """--lr-bounds absolute == timm's CosineLRScheduler over groups holding their own LR (LM4VE builder.py)."""
    args = _args(lr_mult=["1.*=0.5"], lr_bounds="absolute", sched_interval="epoch")
    opt = optim.build_optimizer(args, _model())
    sched = optim.build_scheduler(args, opt, updates_per_epoch=1)
    ref_opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": g["initial_lr"]}
                               for g in opt.param_groups])
    ref = CosineLRScheduler(ref_opt, t_initial=args.epochs, lr_min=args.min_lr, warmup_lr_init=args.warmup_lr,
                            warmup_t=2)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([args.warmup_lr])  # 1e-6 for every group
    for epoch in range(args.epochs + 1):
        sched.step(epoch)
        ref.step(epoch)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref_opt.param_groups], rel=1e-12)
    assert sorted({round(g["lr"], 12) for g in opt.param_groups}) == pytest.approx([args.min_lr])

    scaled = optim.build_optimizer(_args(lr_mult=["1.*=0.5"]), _model())
    optim.build_scheduler(_args(lr_mult=["1.*=0.5"]), scaled, updates_per_epoch=1).step_update(0)
    assert sorted({g["lr"] for g in scaled.param_groups}) == pytest.approx([args.warmup_lr * 0.5, args.warmup_lr])
