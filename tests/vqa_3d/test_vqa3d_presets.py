"""The presets against upstream's train.py / auxi.sh and the paper's C.6, their schedules, the launch scripts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from common.engine import config, optim
from vqa_3d.task import TASK, ClipAdam, ClipAdamW, bn_momentum

REPO = Path(__file__).resolve().parents[2]
PRESETS = {p.stem: p for p in TASK.presets}


def resolve(name: str, *extra: str):
    return config.parse_args(TASK.build_parser(), ["--config", str(PRESETS[name]), *extra])


def test_every_preset_is_a_paper_row_line_and_parses():
    rows = [line.split()[0] for line in (REPO / "vqa_3d/scripts/paper_rows.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert sorted(rows) == sorted(PRESETS) and len(rows) == 7
    for name in PRESETS:
        resolve(name)


@pytest.mark.parametrize("name", ["scanqa_upstream", "sqa3d_upstream", "sqa3d_upstream_llama"])
def test_upstream_presets_follow_train_py_and_auxi_sh(name):
    a = resolve(name)
    assert (a.opt, a.lr, a.weight_decay, a.batch_size, a.epochs, a.clip_grad_value, a.clip_grad) == (
        "adam", 5e-4, 1e-5, 16, 50, 1.0, None)
    assert (a.hidden_size, a.num_points, a.use_color, a.use_height, a.num_proposals, a.sa_npoints) == (
        256, 40000, True, True, 256, [2048, 1024, 512, 256])
    assert (a.vote_loss_weight, a.objectness_loss_weight, a.box_loss_weight, a.sem_cls_loss_weight,
            a.aux_loss_weight, a.answer_loss_weight) == (1.0, 0.5, 1.0, 0.1, 0.1, 0.1)
    assert (a.mcan_flat_mlp_size, a.mcan_flat_out_size, a.lang_pdrop, a.answer_pdrop) == (256, 512, 0.3, 0.3)
    assert a.use_aux_situation == (name != "scanqa_upstream")
    assert a.llm_variant == ("frozen" if name.endswith("llama") else "none")


@pytest.mark.parametrize("name, variant", [("sqa3d_paper_baseline", "none"), ("sqa3d_paper_llama", "frozen"),
                                           ("sqa3d_paper_mlp", "mlp"), ("sqa3d_paper_random", "random_frozen")])
def test_paper_presets_follow_c6(name, variant):
    a = resolve(name)
    assert (a.hidden_size, a.opt, a.batch_size, a.epochs, a.lr) == (768, "adamw", 32, 30, 5e-4)
    assert (a.sched, a.decay_milestones, a.decay_rate, a.warmup_epochs) == ("multistep", [10, 15, 20], 0.1, 0)
    assert a.llm_variant == variant and a.llm_layers == [-1] and a.use_aux_situation


def lr_per_epoch(args, updates_per_epoch: int = 3) -> list[float]:
    model = torch.nn.Linear(2, 2)
    opt = TASK.build_optimizer(args, model)
    sched = optim.build_scheduler(args, opt, updates_per_epoch)
    out = []
    for epoch in range(args.epochs):
        sched.step_update(epoch * updates_per_epoch)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_schedules_constant_upstream_and_divided_by_ten_at_10_15_20():
    up = lr_per_epoch(resolve("sqa3d_upstream"))
    assert up == pytest.approx([5e-4] * 50)
    paper = lr_per_epoch(resolve("sqa3d_paper_llama"))
    assert paper[:10] == pytest.approx([5e-4] * 10) and paper[10:15] == pytest.approx([5e-5] * 5)
    assert paper[15:20] == pytest.approx([5e-6] * 5) and paper[20:] == pytest.approx([5e-7] * 10)


def test_optimizer_is_adam_with_l2_on_everything_and_value_clipping():
    model = torch.nn.Linear(3, 2)
    opt = TASK.build_optimizer(resolve("sqa3d_upstream"), model)
    assert isinstance(opt, ClipAdam) and all(g["weight_decay"] == 1e-5 for g in opt.param_groups)
    assert isinstance(TASK.build_optimizer(resolve("sqa3d_paper_llama"), model), ClipAdamW)
    model.weight.grad = torch.full_like(model.weight, 5.0)
    model.bias.grad = torch.full_like(model.bias, -0.5)
    before = model.weight.detach().clone()
    opt.step()
    assert torch.all(model.weight.grad == 1.0) and torch.all(model.bias.grad == -0.5)  # clipped element-wise
    assert not torch.equal(before, model.weight)


def test_bn_momentum_follows_votenets_schedule():
    a = resolve("sqa3d_upstream")
    assert [bn_momentum(a, e) for e in (0, 19, 20, 39, 40, 200)] == [0.5, 0.5, 0.25, 0.25, 0.125, 0.001]


def test_train_script_dry_run_names_the_data_and_llm():
    env = {**os.environ, "DRY_RUN": "1", "SQA3D_PATH": "/d/sqa", "SCANNET_DATA": "/d/sd", "GLOVE": "/d/glove.p",
           "LLM_PATH": "/ckpt/llama"}
    out = subprocess.run(["bash", "vqa_3d/scripts/train.sh", "sqa3d_paper_llama", "torchrun"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "vqa_3d.train --config" in out and "sqa3d_paper_llama.yaml" in out and "--llm-path /ckpt/llama" in out
    assert "--sqa-path /d/sqa --scannet-data /d/sd --glove /d/glove.p" in out
    env.pop("GLOVE")
    env.pop("DRY_RUN")
    bad = subprocess.run(["bash", "vqa_3d/scripts/train.sh", "sqa3d_upstream", "slurm"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "needs GLOVE" in bad.stderr
