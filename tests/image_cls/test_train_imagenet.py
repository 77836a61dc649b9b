"""``python -m image_cls.train`` end to end on tiny ImageNet-layout fixtures (folders and tars, written with PIL):
log lines, skipped images, checkpoints without frozen weights, resume, DeiT LR scaling, clear data-path errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import one_thread, train_argv  # noqa: F401  (autouse fixture)

from common.engine import checkpoint, config, loop
from common.engine.logging import read_log
from image_cls import train
from image_cls.data.build import build_task_data
from image_cls.data.transforms import build_train_sampler
from image_cls.options import build_parser


def run_train(argv: list[str]) -> dict:
    """In-process ``image_cls.train`` (what ``python -m image_cls.train ARGV`` runs), returning fit's summary."""
    return train.main(config.parse_args(build_parser(), argv))


def test_folder_baseline_logs_metrics_and_skips_corrupt_images_then_resumes(imagenet_folder, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(imagenet_folder, out, "--epochs", "2", "--batch-size", "2", "--no-repeated-aug",
                      "--mixup", "0", "--cutmix", "0", "--smoothing", "0")
    run_train(argv + ["--epochs", "1"])
    rows = read_log(out)
    assert [r["epoch"] for r in rows] == [0]
    row = rows[0]
    assert {"test_acc1", "test_acc5", "test_loss", "train_loss", "train_lr"} <= row.keys()
    assert 0.0 <= row["test_acc1"] <= row["test_acc5"] == 100.0  # 3 classes: top-5 always hits
    # 14 training files, 2 unreadable; every index is visited once per epoch (batch 2, no repeated aug).
    assert row["skipped_train_images"] == 2 and row["skipped_val_images"] == 0
    assert row["n_frozen"] == 0 and row["n_trainable"] == row["n_parameters"]

    # --resume auto after the finished epoch continues with epoch 1 and keeps epoch 0's line.
    first = checkpoint.load(out / "checkpoint.pth")
    run_train(argv + ["--resume", "auto"])
    rows = read_log(out)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0] == row
    resumed = checkpoint.load(out / "checkpoint.pth")
    assert resumed["epoch"] == 1 and first["epoch"] == 0
    assert not torch.equal(resumed["model"]["head.weight"], first["model"]["head.weight"])

    # --eval-only on the last checkpoint reproduces the last logged evaluation.
    test = run_train(argv + ["--eval-only", "--resume", str(out / "checkpoint.pth")])["test"]
    assert test["test_acc1"] == pytest.approx(rows[-1]["test_acc1"])
    assert test["test_loss"] == pytest.approx(rows[-1]["test_loss"], rel=1e-5)


def test_tar_with_frozen_llama_block_mixup_ema_and_lr_scaling(imagenet_tar, tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(imagenet_tar, out, "--data-type", "tar", "--llm-variant", "frozen", "--llm-path",
                      str(tiny_llama_dir), "--model-ema", "--model-ema-decay", "0.9", "--sched", "constant",
                      "--lr", "5e-4", "--min-lr", "0")
    summary = run_train(argv)
    row = read_log(out)[-1]
    # The tiny LLaMA block (dim 64, FFN 192): 4 * 64^2 + 3 * 64 * 192 + 2 * 64 frozen parameters.
    assert row["n_frozen"] == 4 * 64 * 64 + 3 * 64 * 192 + 2 * 64
    assert {"test_ema_acc1", "test_ema_acc5", "test_ema_loss"} <= row.keys()
    # DeiT scaling: 5e-4 per 512 images x (4 images / 512); constant schedule.
    assert row["train_lr"] == pytest.approx(5e-4 * 4 / 512)
    assert summary["best"]["metric"] == "acc1"
    state = checkpoint.load(out / "checkpoint.pth")
    assert not any(k.startswith("llm.lm.") for k in state["model"]) and "llm.in_proj.weight" in state["model"]
    assert not any(k.startswith("llm.lm.") for k in state["ema"])
    assert state["lm_fingerprints"]["llm.lm"]["layers"] == [1]

    # The resolved config.yaml keeps the per-512 LR: re-used as --config it trains with the same LR.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["lr"] == 5e-4 and saved["data_type"] == "tar" and saved["llm_variant"] == "frozen"
    again = tmp_path / "again"
    run_train(["--config", str(out / "config.yaml"), "--output-dir", str(again)])
    assert read_log(again)[-1]["train_lr"] == pytest.approx(5e-4 * 4 / 512)


def test_grey_digits_dataset(tmp_path):
    out = tmp_path / "digits"
    run_train(["--dataset", "digits", "--model", "vit_demo_llm", "--input-size", "28", "--output-dir", str(out),
               "--batch-size", "16", "--epochs", "1", "--train-subset", "64", "--val-subset", "40",
               "--num-workers", "0", "--device", "cpu", "--no-model-ema", "--mixup", "0", "--cutmix", "0",
               "--no-repeated-aug", "--unscale-lr", "--lr", "1e-3", "--warmup-epochs", "0", "--sched", "constant"])
    row = read_log(out)[-1]
    assert row["train_lr"] == pytest.approx(1e-3)
    assert row["test_acc1"] == pytest.approx(round(row["test_acc1"] * 40 / 100) * 100 / 40)  # k of 40 right
    assert checkpoint.load(out / "checkpoint.pth")["model"]["patch_embed.proj.weight"].shape[1] == 1


@pytest.mark.parametrize("case", ["missing", "empty", "no_flag", "bad_llm"])
def test_bad_input_is_one_line_and_exit_code(case, tmp_path, imagenet_folder, capsys):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    data = {"missing": tmp_path / "nope", "empty": empty, "no_flag": None, "bad_llm": imagenet_folder}[case]
    argv = train_argv(data or tmp_path, tmp_path / "out")
    if case == "no_flag":
        argv = argv[2:]
    if case == "bad_llm":
        argv += ["--llm-variant", "frozen", "--llm-path", str(tmp_path / "no_such_llm")]
    with pytest.raises(SystemExit) as exit_info:
        train.run(argv)
    assert exit_info.value.code == (5 if case == "bad_llm" else 4)  # LLM checkpoint / data path (errors.py)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    expected = {"missing": "no such directory", "empty": "expected", "no_flag": "needs --data-path",
                "bad_llm": "no_such_llm"}[case]
    assert err.startswith("error: ") and expected in err
    assert not (tmp_path / "out" / "log.txt").exists()


def test_every_preset_key_is_a_flag():
    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    for preset in sorted((Path(__file__).resolve().parents[2] / "image_cls" / "configs").rglob("*.yaml")):
        assert set(config.read_preset(preset)) <= dests, preset.name  # base: overlays resolved
    args = config.parse_args(build_parser(), ["--config", "image_cls/configs/vit_small_llama.yaml",
                                              "--llm-layers", "-2", "-1", "--batch-size", "128"])
    assert args.llm_layers == [-2, -1] and args.batch_size == 128 and args.repeated_aug and args.amp == "fp16"
    assert json.loads(json.dumps(config.config_to_dict(args)))["lr"] == 5e-4


def test_repeated_aug_sampler_is_the_loaders_and_follows_the_epoch(imagenet_folder):
    """The part-1 RepeatAugSampler goes into the engine's loader; fit's set_epoch reaches it (new order per epoch)."""
    args = config.parse_args(build_parser(), train_argv(imagenet_folder, Path("unused")))
    data = build_task_data(args)
    sampler = build_train_sampler(data.train, True, num_replicas=1, rank=0)
    loader = loop.make_loader(data.train, args, train=True, sampler=sampler)
    assert loader.sampler is sampler and len(loader) == len(data.train) // args.batch_size
    orders = []
    for epoch in (0, 1):
        loop._set_epoch(loader, epoch)
        orders.append(list(iter(sampler)))
    assert sampler.epoch == 1 and orders[0] != orders[1]
    assert all(len(order) == len(data.train) for order in orders)
