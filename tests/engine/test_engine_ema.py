"""ema: the EMA copy shares the frozen parameters and averages (and stores) only the trainable state."""

from __future__ import annotations

import engine_toy_train as toy
import torch

from common.engine.ema import create_ema


def test_ema_shares_frozen_weights_and_averages_only_trainable_ones():
    model = toy.ToyModel()
    ema = create_ema(model, decay=0.5)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("adapter.lm.") for n in frozen)
    ema_params = dict(ema.module.named_parameters())
    for name, param in model.named_parameters():
        assert (ema_params[name] is param) == (not param.requires_grad), name  # frozen: same tensor, no copy
    assert set(ema.module.state_dict()) == set(model.state_dict()) and not any(
        k.startswith("adapter.lm.") for k in ema.module.state_dict())

    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    frozen_before = {n: p.clone() for n, p in model.adapter.lm.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    ema.update(model)  # decay 0.5: halfway to the model
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, 0.5 * before[key] + 0.5 * model.state_dict()[key])
    for name, param in model.adapter.lm.named_parameters():
        assert torch.equal(param, frozen_before[name]) and param is ema_params[f"adapter.lm.{name}"]


def test_parameter_counts_count_a_tied_parameter_once():
    from common.engine.logging import count_parameters

    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Linear(4, 3, bias=False))
    model[1].weight = torch.nn.Parameter(torch.zeros(3, 4), requires_grad=False)
    assert count_parameters(model) == {"n_parameters": 24, "n_trainable": 12, "n_frozen": 12}
    model[1].weight = model[0].weight  # tied (same shape needed only for the count)
    assert count_parameters(model) == {"n_parameters": 12, "n_trainable": 12, "n_frozen": 0}
