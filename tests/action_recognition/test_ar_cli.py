"""End to end through the command lines on CPU: a tiny VideoMAE from a pretraining checkpoint + a tiny LLaMA block,
trained and evaluated on PyAV-written webm/mp4 videos with an undecodable and a too-short one in each split; bad
inputs give one error line and an exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ar_fixtures import CODECS, TINY_ARGS, TINY_MODEL, pretraining_state, write_video, write_videomae_checkpoint

from action_recognition import evaluate, train
from action_recognition.models import build_model
from common.engine import checkpoint, loop
from common.engine import logging as runlog

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "action_recognition" / "configs"
QUICK = [*TINY_ARGS, "--nb-classes", "3", "--total-batch-size", "2", "--num-workers", "0", "--device", "cpu",
         "--amp", "none", "--warmup-epochs", "1"]


def run(module, argv: list) -> None:
    loop.run_cli(module.main, module.build_parser(), [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory, ssv2_root) -> dict[str, Path]:
    """The session SSv2 folder plus, in each CSV, an undecodable and a 3-frame video (not next to each other)."""
    root = tmp_path_factory.mktemp("ssv2_broken")
    videos = Path(shutil.copytree(ssv2_root["videos"], root / "videos"))
    (videos / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(2000))
    ext, codec = CODECS[-1]
    write_video(videos / f"short.{ext}", codec, 3)
    lists = root / "lists"
    lists.mkdir()
    for split in ("train", "val"):
        lines = (ssv2_root["lists"] / f"{split}.csv").read_text().splitlines()
        lines.insert(0, "broken.webm 1")
        lines.insert(3, f"short.{ext} 2")
        (lists / f"{split}.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(7)
    encoder = build_model({**TINY_MODEL, "nb_classes": 3}).state_dict()
    pretrained = write_videomae_checkpoint(root / "videomae_pretrain.pth", pretraining_state(encoder))
    return {"lists": lists, "videos": videos, "pretrained": pretrained}


def test_train_with_llm_then_evaluate_the_best_checkpoint(tmp_path, data, tiny_llama_dir):
    out = tmp_path / "run"
    run(train, ["--config", CONFIGS / "ssv2_vit_s_llama.yaml", "--data-path", data["lists"], "--data-root",
                data["videos"], "--finetune", data["pretrained"], "--llm-path", tiny_llama_dir, "--llm-layers", "-1",
                "--output-dir", out, "--epochs", "2", *QUICK])
    rows = runlog.read_log(out)
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:  # 4 decodable validation videos: top-1 is a multiple of 25
        assert r["test_videos"] == 4 and r["test_skipped_videos"] == 2 and r["skipped_train_videos"] == 2
        assert r["test_acc1"] % 25 == 0 and r["test_acc1"] <= r["test_acc5"] == 100.0  # 3 classes: top-5 = all
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["batch_size"] == 2 and saved["lr"] == 1e-3 and saved["llm_layers"] == [-1]
    ckpt = checkpoint.load(out / "checkpoint.pth")
    assert ckpt["config"]["lr"] == 1e-3  # as given (config.yaml's): a reload or resume scales it once
    assert ckpt["optimizer"]["param_groups"][-1]["initial_lr"] == pytest.approx(1e-3 * 2 / 256)  # x total batch / 256
    assert "llm.in_proj.weight" in ckpt["model"] and not any(k.startswith("llm.lm.") for k in ckpt["model"])
    assert ckpt["lm_fingerprints"]["llm.lm"]["layers"] == [2]
    scales = {name: g["lr_scale"] for g in ckpt["optimizer"]["param_groups"] for name in g["param_names"]}
    assert scales["patch_embed.proj.weight"] == pytest.approx(0.7 ** 3)  # 2 blocks: ids 0, 1, 2, 3
    assert scales["blocks.0.attn.qkv.weight"] == pytest.approx(0.7 ** 2)
    assert scales["blocks.1.attn.q_bias"] == pytest.approx(0.7)
    assert scales["head.weight"] == scales["llm.in_proj.weight"] == 1.0

    results = tmp_path / "eval.json"
    run(evaluate, ["--config", out / "config.yaml", "--resume", out / "best.pth", "--results", results,
                   "--eval-batch-size", "3"])
    metrics = json.loads(results.read_text())
    best = max(rows, key=lambda r: r["test_acc1"])
    assert metrics["test_acc1"] == best["best_acc1"] == rows[-1]["best_acc1"]
    assert metrics["test_videos"] == 4 and metrics["test_skipped_videos"] == 2
    alone = tmp_path / "alone.json"  # without --config: the config saved in the checkpoint, flags given here on top
    run(evaluate, ["--resume", out / "best.pth", "--results", alone, "--eval-batch-size", "3", "--num-workers", "0"])
    assert json.loads(alone.read_text())["test_acc1"] == metrics["test_acc1"]


def test_a_released_finetuned_checkpoint_evaluates_and_a_pretrained_one_is_refused(tmp_path, data, capsys):
    torch.manual_seed(3)
    model = build_model({**TINY_MODEL, "nb_classes": 3})
    finetuned = write_videomae_checkpoint(tmp_path / "ft.pth", model.state_dict(), key="module")
    common = ["--config", CONFIGS / "ssv2_vit_b_baseline.yaml", "--data-path", data["lists"], "--data-root",
              data["videos"], *QUICK]
    run(evaluate, [*common, "--finetune", finetuned])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["test_videos"] == 4 and 0 <= metrics["test_acc1"] <= 100
    with pytest.raises(SystemExit) as exit_info:
        run(evaluate, [*common, "--finetune", data["pretrained"]])
    assert exit_info.value.code == 2 and "pretraining checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--data-path", "{tmp}/nowhere"], 4, "error: data path not found: {tmp}/nowhere"),
    (["--data-path", "{tmp}"], 4, "error: {tmp}/train.csv not found"),
    (["--finetune", "{tmp}/none.pth"], 1, "error: checkpoint not found: {tmp}/none.pth"),
    (["--llm-variant", "frozen", "--llm-path", "{tmp}/no_llama"], 5, "error: --llm-path: "),
    (["--short-side-size", "48"], 2, "error: --short-side-size 48 must equal --input-size 32"),
    (["--data-root", "{tmp}"], 4, "videos of {lists}/train.csv exists"),
])
def test_bad_inputs_give_one_line_and_an_exit_code(tmp_path, data, capsys, args, code, message):
    fill = {"tmp": tmp_path, "lists": data["lists"]}
    argv = ["--config", CONFIGS / "ssv2_vit_s_baseline.yaml", "--data-path", data["lists"], "--data-root",
            data["videos"], "--output-dir", tmp_path / "out", *QUICK, *[a.format(**fill) for a in args]]
    with pytest.raises(SystemExit) as exit_info:
        run(train, argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == code and "Traceback" not in err
    assert len(errors) == 1 and message.format(**fill) in errors[0]


@pytest.mark.slow
def test_two_processes_evaluate_like_one(tmp_path, data):
    torch.manual_seed(4)
    config = {**TINY_MODEL, "nb_classes": 3, "llm_variant": "none"}
    ckpt = checkpoint.save(tmp_path / "best.pth", checkpoint.build_state(model=build_model(config), epoch=0,
                                                                         config=config))
    argv = ["--config", str(CONFIGS / "ssv2_vit_s_baseline.yaml"), "--data-path", str(data["lists"]),
            "--data-root", str(data["videos"]), "--resume", str(ckpt), "--eval-batch-size", "1", *QUICK]
    run(evaluate, [*argv, "--results", tmp_path / "one.json"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "action_recognition.evaluate", *argv, "--results", str(tmp_path / "two.json")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))
    assert two["test_videos"] == one["test_videos"] == 4 and two["test_skipped_videos"] == 2
    assert two["test_acc1"] == one["test_acc1"] and two["test_acc5"] == one["test_acc5"]
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
