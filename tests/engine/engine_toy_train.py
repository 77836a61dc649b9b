"""A tiny task written against common.engine, the way a real train.py uses it (tests drive it as a program).

    python -m tests.engine.engine_toy_train --output-dir /tmp/toy --epochs 3
    GPUS=2 tools/dist_train.sh tests.engine.engine_toy_train --output-dir /tmp/toy2 --batch-size 4

Test switches: ``--noise`` (random input noise in the loss, to exercise RNG restore), ``--nan-at-step K`` (the
K-th micro-batch of this process returns a NaN loss; with ``--nan-rank R`` only on rank R), ``--lm-seed`` (another
frozen block) and the environment variable ``ENGINE_TOY_DIE_AFTER_EPOCH`` (``os._exit(17)`` right after that
epoch's checkpoint, like a killed job).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from common.engine import config, distributed, loop
from common.frozen_lm import FrozenLM, LLMAdapter, LMConfig

DIE_EXIT_CODE = 17
# a short, fully determined CPU run; tests append what they vary
QUICK_ARGS = ["--device", "cpu", "--epochs", "3", "--warmup-epochs", "1", "--lr", "1e-2", "--min-lr", "1e-4",
              "--num-workers", "0"]


TOY_LM = LMConfig(family="llama", dim=8, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, ffn_hidden=16, norm_eps=1e-5)


class ToyModel(nn.Module):
    """2 tokens of 2 features -> embed + position offset -> LayerNorm -> frozen random LLM block (residual
    adapter) -> mean pool -> dropout -> head: the shape of a task model with the graft."""

    def __init__(self, dim: int = 6, classes: int = 3, dropout: float = 0.0, lm_seed: int = 0):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.offset = nn.Parameter(torch.zeros(1, 2, dim))
        self.norm = nn.LayerNorm(dim)
        self.adapter = LLMAdapter(dim, FrozenLM.from_config(TOY_LM, seed=lm_seed), mode="residual")
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, classes)

    def no_weight_decay(self) -> set[str]:
        return {"offset"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.adapter(self.norm(self.embed(x.view(-1, 2, 2)) + self.offset))
        return self.head(self.drop(tokens.mean(1)))


def toy_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.randn(4, 3, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


def build_parser() -> argparse.ArgumentParser:
    parser = config.make_parser("toy task for the engine tests")
    toy = parser.add_argument_group("toy")
    toy.add_argument("--n-train", type=int, default=48)
    toy.add_argument("--n-val", type=int, default=21)
    toy.add_argument("--dropout", type=float, default=0.0)
    toy.add_argument("--noise", type=float, default=0.0, help="std of Gaussian input noise added in the loss")
    toy.add_argument("--nan-at-step", type=int, default=None)
    toy.add_argument("--nan-rank", type=int, default=None, help="only this rank's loss turns NaN (default: all)")
    toy.add_argument("--lm-seed", type=int, default=0, help="seed of the random frozen LLM block")
    return parser


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    info = loop.setup(args)
    model = ToyModel(dropout=args.dropout, lm_seed=args.lm_seed)
    train_loader = loop.make_loader(toy_data(args.n_train, 0), args, train=True)
    val_loader = loop.make_loader(toy_data(args.n_val, 1), args, train=False)
    steps = {"n": 0}

    def loss_fn(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        if args.noise:
            x = x + args.noise * torch.randn_like(x)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if steps["n"] == args.nan_at_step and args.nan_rank in (None, info.rank):
            loss = loss * float("nan")
        steps["n"] += 1
        return {"loss": loss, "acc": (logits.argmax(1) == y).float().mean()}

    def evaluate(model: nn.Module, loader) -> dict[str, float]:
        logits, labels = [], []
        for x, y in loader:
            logits.append(model(x.to(info.device)))
            labels.append(y.to(info.device))
        logits = distributed.all_gather_cat(torch.cat(logits))
        labels = distributed.all_gather_cat(torch.cat(labels))
        return {"acc1": 100.0 * (logits.argmax(1) == labels).float().mean().item(),
                "loss": F.cross_entropy(logits, labels).item()}

    def maybe_die(epoch: int, stats: dict) -> None:
        if os.environ.get("ENGINE_TOY_DIE_AFTER_EPOCH") == str(epoch):
            os._exit(DIE_EXIT_CODE)

    return loop.fit(args, model, train_loader, loss_fn, val_loader=val_loader, evaluate_fn=evaluate,
                    best_metric="acc1", best_mode="max", dist_info=info, on_epoch_end=maybe_die)


if __name__ == "__main__":
    loop.run_cli(main, build_parser())
