"""End-to-end behaviour of loop.fit through the toy task: DDP equivalence, kill-and-resume, NaN stop, eval-only."""

from __future__ import annotations

import json
import math
import sys

import engine_toy_train as toy
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.engine import checkpoint, config, distributed, loop, optim
from common.engine import logging as runlog

TOY_ARGS = toy.QUICK_ARGS
TRAJECTORY_KEYS = ("train_loss", "train_acc", "train_lr", "test_loss", "test_acc1")


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _model_state(run_dir):
    return checkpoint.load(run_dir / checkpoint.LATEST_NAME)["model"]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(run_toy, tmp_path):
    one = _ok(run_toy([*TOY_ARGS, "--output-dir", str(tmp_path / "one"), "--batch-size", "8"]))
    two = _ok(run_toy([*TOY_ARGS, "--output-dir", str(tmp_path / "two"), "--batch-size", "4"], nproc=2))
    accum = _ok(run_toy([*TOY_ARGS, "--output-dir", str(tmp_path / "accum"), "--batch-size", "4",
                         "--accum-iter", "2"]))
    assert "rank 0/2 on cpu" in two.stderr and "rank 0/1 on cpu" in one.stderr + accum.stderr

    ref = runlog.read_log(tmp_path / "one")
    assert [r["epoch"] for r in ref] == [0, 1, 2]
    assert ref[-1]["train_loss"] < ref[0]["train_loss"] - 0.1  # it really trains, so equality means something
    for other in ("two", "accum"):
        rows = runlog.read_log(tmp_path / other)
        assert len(rows) == len(ref)
        for a, b in zip(ref, rows):
            for key in TRAJECTORY_KEYS:
                assert b[key] == pytest.approx(a[key], abs=1e-6, rel=0), (other, a["epoch"], key)
        state, ref_state = _model_state(tmp_path / other), _model_state(tmp_path / "one")
        assert state.keys() == ref_state.keys()
        for key in ref_state:
            torch.testing.assert_close(state[key], ref_state[key], atol=1e-6, rtol=0, msg=f"{other}: {key}")
    assert len(checkpoint.load(tmp_path / "two" / checkpoint.LATEST_NAME)["rng"]) == 2  # one RNG state per rank


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_state(run_toy, tmp_path):
    # randomness in the loss (noise, dropout), EMA and accumulation: all of it must come back on resume
    args = [*TOY_ARGS, "--epochs", "4", "--batch-size", "8", "--accum-iter", "2", "--noise", "0.3",
            "--dropout", "0.2", "--model-ema", "--model-ema-decay", "0.9", "--resume", "auto"]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full = _ok(run_toy([*args, "--output-dir", str(full_dir)]))
    assert "no checkpoint.pth" in full.stderr  # --resume auto on an empty directory starts fresh

    killed = run_toy([*args, "--output-dir", str(part_dir)], env={"ENGINE_TOY_DIE_AFTER_EPOCH": "1"})
    assert killed.returncode == toy.DIE_EXIT_CODE, killed.stderr[-3000:]
    assert checkpoint.load(part_dir / checkpoint.LATEST_NAME)["epoch"] == 1
    resumed = _ok(run_toy([*args, "--output-dir", str(part_dir)]))
    assert "resumed from" in resumed.stderr and "continuing at epoch 2" in resumed.stderr

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]

    assert without_time(runlog.read_log(part_dir)) == without_time(runlog.read_log(full_dir))
    a, b = (checkpoint.load(d / checkpoint.LATEST_NAME) for d in (full_dir, part_dir))
    assert a["epoch"] == b["epoch"] == 3
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["best"] == b["best"]


def test_checkpoint_holds_trainable_state_only_and_everything_to_resume(tmp_path):
    out = tmp_path / "run"
    loop.run_cli(toy.main, toy.build_parser(),
                 [*TOY_ARGS, "--epochs", "1", "--batch-size", "16", "--model-ema", "--output-dir", str(out)])
    ckpt = checkpoint.load(out / checkpoint.LATEST_NAME)
    assert set(ckpt) == {"format", "version", "epoch", "model", "optimizer", "scheduler", "scaler", "ema", "config",
                         "rng", "lm_fingerprints", "best"}
    model = toy.ToyModel()
    assert set(ckpt["model"]) == set(model.state_dict())
    assert not any(k.startswith("adapter.lm.") for k in ckpt["model"]) and "adapter.in_proj.weight" in ckpt["model"]
    assert ckpt["lm_fingerprints"]["adapter.lm"]["random_seed"] == 0
    assert set(ckpt["ema"]) == set(ckpt["model"])
    assert ckpt["config"]["batch_size"] == 16 and ckpt["config"]["output_dir"] == str(out)
    assert ckpt["scaler"] is None  # no fp16
    assert ckpt["best"]["metric"] == "acc1" and ckpt["best"]["epoch"] == 0
    assert (out / checkpoint.BEST_NAME).is_file() and (out / "config.yaml").is_file()
    row = runlog.read_log(out)[0]
    assert {"epoch", "train_lr", "train_loss", "test_acc1", "test_loss", "test_ema_acc1", "n_parameters",
            "n_trainable", "n_frozen", "epoch_time"} <= row.keys()
    n_frozen = sum(p.numel() for p in model.adapter.lm.parameters())
    assert n_frozen > 0 and row["n_frozen"] == n_frozen
    assert row["n_trainable"] == sum(p.numel() for p in model.parameters()) - n_frozen
    assert row["n_parameters"] == row["n_trainable"] + n_frozen


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TOY_ARGS, "--batch-size", "16", "--nan-at-step", "7", "--output-dir", str(out)]  # 3 steps/epoch
    with pytest.raises(SystemExit) as exc:
        loop.run_cli(toy.main, toy.build_parser(), argv)
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "error: training loss is nan at epoch 2, batch 2/3" in err
    assert f"last good checkpoint: {out / checkpoint.LATEST_NAME}" in err
    assert "Traceback" not in err
    ckpt = checkpoint.load(out / checkpoint.LATEST_NAME)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert [r["epoch"] for r in runlog.read_log(out)] == [0, 1]


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_without_hanging(run_toy, tmp_path):
    proc = run_toy([*TOY_ARGS, "--batch-size", "8", "--nan-at-step", "4", "--nan-rank", "1",
                    "--output-dir", str(tmp_path)], nproc=2, timeout=90)
    assert proc.returncode != 0
    assert "error: training loss is nan at epoch 1, batch 2/3" in proc.stderr
    assert checkpoint.load(tmp_path / checkpoint.LATEST_NAME)["epoch"] == 0


def test_mixed_precision_ema_and_tensorboard_runs(tmp_path):
    for amp in ("bf16", "fp16"):
        out = tmp_path / amp
        result = toy.main(config.parse_args(toy.build_parser(), [
            *TOY_ARGS, "--epochs", "2", "--batch-size", "16", "--amp", amp, "--model-ema", "--clip-grad", "1.0",
            "--log-tensorboard", "--output-dir", str(out)]))
        rows = runlog.read_log(out)
        assert len(rows) == 2 and all(math.isfinite(r["train_loss"]) and "test_ema_acc1" in r for r in rows)
        assert result["best"]["value"] == max(r["test_acc1"] for r in rows)
        scaler = checkpoint.load(out / checkpoint.LATEST_NAME)["scaler"]
        assert (scaler is not None) == (amp == "fp16")  # GradScaler only for fp16
        assert any((out / "tb").glob("events.out.tfevents.*"))


def test_accumulation_with_a_short_last_cycle_matches_the_big_batches():
    """5 micro-batches with --accum-iter 2 make updates over batches (2, 2, 1): the same as 3 big batches."""
    args = config.make_parser("t").parse_args(["--accum-iter", "2", "--lr", "0.05", "--clip-grad", "0.5"])
    x, y = toy.toy_data(40, 0).tensors
    micro = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]
    big = [(x[:16], y[:16]), (x[16:32], y[16:32]), (x[32:], y[32:])]
    info = distributed.DistInfo(0, 1, 0, torch.device("cpu"), False)
    states = []
    for loader, accum in ((micro, 2), (big, 1)):
        torch.manual_seed(0)
        model = toy.ToyModel()
        optimizer = optim.build_optimizer(args, model)
        args.accum_iter = accum
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        loop.train_one_epoch(model, model, loader, lambda m, b: F.cross_entropy(m(b[0]), b[1]), optimizer, None,
                             scaler, None, args, info, epoch=0, updates_per_epoch=3)
        assert optimizer.state[next(model.head.parameters())]["step"].item() == 3
        states.append(model.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], atol=1e-6, rtol=0)


def test_run_log_drops_lines_of_epochs_being_redone(tmp_path):
    log = runlog.RunLog(tmp_path)
    for epoch in range(4):
        log.write({"epoch": epoch, "train_loss": float("nan") if epoch == 3 else 1.0})
    assert runlog.read_log(tmp_path)[3]["train_loss"] == "nan"  # JSON has no NaN: written as a string
    with (tmp_path / runlog.LOG_NAME).open("a") as f:
        f.write('{"epoch": 4, "train_lo')  # a line cut short by a kill
    runlog.RunLog(tmp_path, start_epoch=2)
    assert [r["epoch"] for r in runlog.read_log(tmp_path)] == [0, 1]
    runlog.RunLog(tmp_path, start_epoch=0)
    assert runlog.read_log(tmp_path) == []


def test_progress_bar_only_on_a_terminal(monkeypatch):
    data = [1, 2, 3]
    assert runlog.progress(data, total=3) is data
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = runlog.progress(data, total=3)
    assert bar is not data and list(bar) == data
    assert runlog.progress(data, enabled=False) is data


def test_eval_only_reproduces_the_best_checkpoint_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    loop.run_cli(toy.main, toy.build_parser(), [*TOY_ARGS, "--batch-size", "16", "--output-dir", str(out)])
    best = checkpoint.load(out / checkpoint.BEST_NAME)["best"]
    capsys.readouterr()
    loop.run_cli(toy.main, toy.build_parser(), [*TOY_ARGS, "--batch-size", "16", "--output-dir", str(tmp_path / "ev"),
                                                "--eval-only", "--resume", str(out / checkpoint.BEST_NAME)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["test_acc1"] == pytest.approx(best["value"])


def test_resume_from_a_missing_path_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        loop.run_cli(toy.main, toy.build_parser(), [*TOY_ARGS, "--batch-size", "16", "--output-dir", str(tmp_path),
                                                    "--resume", str(tmp_path / "nope.pth")])
    assert exc.value.code == 1
    assert f"error: --resume {tmp_path / 'nope.pth'}: no such file" in capsys.readouterr().err


def test_resume_refuses_a_different_frozen_block(tmp_path, capsys):
    out = tmp_path / "run"
    base = [*TOY_ARGS, "--epochs", "1", "--batch-size", "16", "--output-dir", str(out)]
    loop.run_cli(toy.main, toy.build_parser(), base)
    with pytest.raises(SystemExit) as exc:
        loop.run_cli(toy.main, toy.build_parser(), [*base, "--epochs", "2", "--resume", "auto", "--lm-seed", "1"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "was trained with a different frozen LLM block" in err and "random_seed was 0, now 1" in err


def test_freeze_encoder_holds_the_encoder_batch_norm_statistics():
    """--freeze-encoder: the encoder's BatchNorm normalises with its stored statistics and never updates them, even
    after an evaluation in the middle of training; the head's BatchNorm keeps training."""
    from common.engine import runner
    from common.frozen_lm import LLMAdapter

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
            self.llm = LLMAdapter(8, None, mlp_hidden=16)
            self.head = nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 2))

        def forward(self, x):
            return self.head(self.llm(self.encoder(x)[:, None])[:, 0])

    model = Model()
    runner.freeze_encoder(model, ("head.",))
    for _ in range(2):
        loop.set_train_mode(model)
        model(torch.randn(16, 4) * 3 + 1)
        loop.evaluate(lambda m, loader: {"n": 0.0}, model, [], torch.device("cpu"))
    encoder_bn, head_bn = model.encoder[1], model.head[0]
    assert not encoder_bn.training and encoder_bn.num_batches_tracked == 0
    assert torch.equal(encoder_bn.running_mean, torch.zeros(8)) and torch.equal(encoder_bn.running_var, torch.ones(8))
    assert model.training and head_bn.training and head_bn.num_batches_tracked == 2
