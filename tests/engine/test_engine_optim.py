"""optim: trainable-only groups, no-decay membership, LR multipliers and layer decay through the timm schedule."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn

from common.engine import config, optim
from common.engine.errors import ConfigError


class Adapter(nn.Module):
    def __init__(self, dim: int, lm_dim: int):
        super().__init__()
        self.in_proj = nn.Linear(dim, lm_dim, bias=False)
        self.lm = nn.Linear(lm_dim, lm_dim)  # stands in for the frozen LLM block
        self.lm.requires_grad_(False)
        self.out_proj = nn.Linear(lm_dim, dim, bias=False)


class Net(nn.Module):
    """patch_embed, 2 blocks (layer ids 1, 2), an adapter with a frozen part, a head (layer id 3)."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Linear(3, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 2, 4))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4)) for _ in range(2))
        self.adapter = Adapter(4, 6)
        self.head = nn.Linear(4, 2)

    def no_weight_decay(self):
        return {"pos_embed"}


def layer_id(name: str) -> int:
    if name.startswith(("patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return 3


def _groups_by_name(groups):
    return {n: g for g in groups for n in g["param_names"]}


def test_groups_hold_trainable_params_only_with_the_right_decay():
    model = Net()
    groups = optim.param_groups(model, weight_decay=0.05)
    by_name = _groups_by_name(groups)
    assert not any(n.startswith("adapter.lm.") for n in by_name)
    assert set(by_name) == {n for n, p in model.named_parameters() if p.requires_grad}
    no_decay = {n for n, g in by_name.items() if g["weight_decay"] == 0.0}
    assert no_decay == {"patch_embed.bias", "pos_embed", "blocks.0.0.weight", "blocks.0.0.bias", "blocks.0.1.bias",
                        "blocks.1.0.weight", "blocks.1.0.bias", "blocks.1.1.bias", "head.bias"}
    assert all(g["weight_decay"] == 0.05 for n, g in by_name.items() if n not in no_decay)
    # params and names stay aligned
    params = dict(model.named_parameters())
    assert all(params[n] is p for g in groups for n, p in zip(g["param_names"], g["params"]))


def test_no_weight_decay_names_of_submodules_are_prefixed():
    wrapper = nn.Module()
    wrapper.backbone = Net()
    by_name = _groups_by_name(optim.param_groups(wrapper, weight_decay=0.1))
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0


def test_lr_multipliers_first_match_and_layer_decay_multiply():
    groups = optim.param_groups(Net(), 0.05, lr_multipliers={"*.in_proj.*": 10.0, "adapter": 3.0, "head": 2.0},
                                layer_decay=(0.5, layer_id, 2), no_decay_lr_mult=0.1)
    scale = {n: g["lr_scale"] for n, g in _groups_by_name(groups).items()}
    assert scale["adapter.in_proj.weight"] == pytest.approx(10.0)  # first matching pattern wins; layer id 3
    assert scale["adapter.out_proj.weight"] == pytest.approx(3.0)
    assert scale["head.weight"] == pytest.approx(2.0)
    assert scale["head.bias"] == pytest.approx(0.2)  # no-decay x0.1 times the head multiplier
    assert scale["blocks.1.1.weight"] == pytest.approx(0.5)
    assert scale["blocks.0.1.weight"] == pytest.approx(0.25)
    assert scale["patch_embed.weight"] == pytest.approx(0.125)
    assert scale["pos_embed"] == pytest.approx(0.0125)


def _args(**overrides) -> argparse.Namespace:
    args = config.make_parser("t").parse_args([])
    vars(args).update(overrides)
    return args


def test_multipliers_survive_every_scheduler_step():
    args = _args(lr=1e-3, warmup_lr=1e-5, min_lr=1e-5, warmup_epochs=1, epochs=4, lr_mult=["*.in_proj.*=10"],
                 no_decay_lr_mult=0.1)
    optimizer = optim.build_optimizer(args, Net())
    scales = [g["lr_scale"] for g in optimizer.param_groups]
    assert sorted(set(scales)) == pytest.approx([0.1, 1.0, 10.0])
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3 * s for s in scales])  # before stepping
    scheduler = optim.build_scheduler(args, optimizer, updates_per_epoch=5)
    seen = []
    for update in range(20):
        scheduler.step_update(update)
        base = optim.base_lr(optimizer)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([base * s for s in scales], rel=1e-12)
        seen.append(base)
    # linear warmup over 5 updates from 1e-5, then timm's cosine over all 20 updates (warmup not a prefix)
    expected = [1e-5 + t * (1e-3 - 1e-5) / 5 if t < 5 else 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 20))
                for t in range(20)]
    assert seen == pytest.approx(expected, rel=1e-9)  # the unscaled base LR: lr_scale is applied once, per group


def test_layer_decay_needs_layer_ids_from_the_task():
    with pytest.raises(ConfigError, match="layer ids"):
        optim.build_optimizer(_args(layer_decay=0.75), Net())
    optimizer = optim.build_optimizer(_args(layer_decay=0.5), Net(), layer_id_fn=layer_id, num_layers=2)
    assert sorted({g["lr_scale"] for g in optimizer.param_groups}) == pytest.approx([0.125, 0.25, 0.5, 1.0])


def test_model_without_trainable_parameters_is_refused():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        optim.param_groups(model, 0.1)


def test_lr_multiplier_parsing():
    assert optim.parse_lr_multipliers(["a.*=2", "b=0.5"]) == {"a.*": 2.0, "b": 0.5}
    with pytest.raises(ConfigError, match="PATTERN=FACTOR"):
        optim.parse_lr_multipliers(["oops"])


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                      ("sgd", torch.optim.SGD)])
def test_opt_choice_keeps_the_groups(name, cls):
    args = config.make_parser("t").parse_args(["--opt", name, "--lr", "0.01", "--momentum", "0.5",
                                               "--lr-mult", "0.*=2"])
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    opt = optim.build_optimizer(args, model)
    assert type(opt) is cls and sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.01, 0.01, 0.02, 0.02])
    assert all(g["initial_lr"] == 0.01 for g in opt.param_groups)
    if name == "sgd":
        assert opt.defaults["momentum"] == 0.5
    else:
        assert opt.defaults["betas"] == (0.9, 0.999)


def test_split_group_moves_a_prefix_into_its_own_group():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    groups = optim.split_group(optim.param_groups(model, 0.05), "1.", lr_scale=0.5, weight_decay=0.0)
    own = [g for g in groups if g["lr_scale"] == 0.5]
    assert len(own) == 1 and own[0]["param_names"] == ["1.weight", "1.bias"] and own[0]["weight_decay"] == 0.0
    assert not any(n.startswith("1.") for g in groups if g is not own[0] for n in g["param_names"])
    assert optim.split_group(optim.param_groups(model, 0.05), "llm.", 0.5, 0.0) == optim.param_groups(model, 0.05)
