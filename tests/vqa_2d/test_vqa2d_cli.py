"""End to end through the command lines on fixtures in both on-disk formats: VQAv2 (JSON + COCO folders, METER
arrow) and Flickr30k (Karpathy JSON + images, METER arrow); evaluation reloads; bad inputs exit with their code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vqa_fixtures import TINY_MODEL, picture, write_f30k_arrow, write_f30k_karpathy, write_vqa_arrow, write_vqa_json

from common.engine import logging as runlog
from common.engine import runner
from vqa_2d import evaluate, train
from vqa_2d.data import inputs
from vqa_2d.metrics_vqa import question_accuracy
from vqa_2d.task import TASK

QUICK = [*TINY_MODEL, "--num-workers", "0", "--batch-size", "4", "--warmup-epochs", "0", "--lr", "1e-4",
         "--device", "cpu"]


def train_run(argv) -> None:
    train.run([str(a) for a in argv])


def test_vqa_json_train_evaluate_and_answers(tmp_path, tokenizer_dir):
    data = write_vqa_json(tmp_path / "vqa", n_train=6, n_val=3, missing_val_image=True)
    (data / "train2014" / "COCO_train2014_000000000002.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    train_run(["--dataset", "vqav2", "--data-format", "json", "--data-path", data, "--tokenizer", tokenizer_dir,
               "--answer-min-count", "1", "--output-dir", out, "--epochs", "2", *QUICK])
    rows = runlog.read_log(out)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0]["skipped_val2014_missing_image"] == 2  # one image, two questions
    assert sum(r.get("skipped_train_unreadable_image", 0) for r in rows) == 4  # 2 questions x 2 epochs
    for r in rows:  # 2 val images x 2 questions: the official accuracy is a multiple of 100 / 4 here
        assert 0 <= r["test_acc"] <= 100 and {"test_acc_yes_no", "test_acc_other", "test_vqa_score"} <= r.keys()
    vocab = json.loads((out / "answers.json").read_text())
    assert set(vocab) == {"red", "green", "blue", "no"}  # normalised multiple-choice answers of train + val

    # evaluate reloads the best run; its accuracy equals the official metric on the reloaded model's answers
    results = tmp_path / "eval.json"
    answers = tmp_path / "answers.json"
    evaluate.run(["--resume", str(out / "best.pth"), "--results", str(results), "--answers-out", str(answers)])
    metrics = json.loads(results.read_text())
    best = max(rows, key=lambda r: r["test_vqa_score"])
    assert metrics["test_vqa_score"] == pytest.approx(best["test_vqa_score"])
    written = json.loads(answers.read_text())
    annotations = {a["question_id"]: a for a in
                   json.loads((data / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]}
    assert len(written) == 4 and all(r["answer"] in vocab for r in written)
    official = [question_accuracy(r["answer"], [a["answer"] for a in annotations[r["question_id"]]["answers"]])
                for r in written]
    assert metrics["test_acc"] == pytest.approx(100 * sum(official) / len(official))

    # test-dev: questions only (images in test2015/); the EvalAI submission file is the only output
    questions = json.loads((data / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    (data / "test2015").mkdir()
    for image in (data / "val2014").glob("*.jpg"):
        (data / "test2015" / image.name.replace("val2014", "test2015")).write_bytes(image.read_bytes())
    (data / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps(questions))
    submission = tmp_path / "test_dev.json"
    evaluate.run(["--resume", str(out / "best.pth"), "--split", "test-dev2015", "--answers-out", str(submission)])
    rows_out = json.loads(submission.read_text())
    assert sorted(r["question_id"] for r in rows_out) == sorted(r["question_id"] for r in written)


def test_vqa_arrow_with_frozen_llm_and_official_annotations(tmp_path, tokenizer_dir, tiny_llama_dir):
    arrow = write_vqa_arrow(tmp_path / "arrow", n_train=4, n_val=2)
    raw = write_vqa_json(tmp_path / "raw", n_train=1, n_val=2)
    out = tmp_path / "run"
    train_run(["--dataset", "vqav2", "--data-path", arrow, "--tokenizer", tokenizer_dir, "--output-dir", out,
               "--epochs", "1", "--llm-variant", "frozen", "--llm-path", tiny_llama_dir, "--annotations",
               raw / "v2_mscoco_val2014_annotations.json", *QUICK])
    row = runlog.read_log(out)[-1]
    assert row["n_frozen"] > 0 and {"test_vqa_score", "test_acc", "test_acc_yes_no"} <= row.keys()
    state = torch.load(out / "best.pth", map_location="cpu", weights_only=True)
    assert not any(k.startswith("llm.lm.") and "layers" in k for k in state["model"])  # frozen block not saved
    run = runner.load_run(TASK, out / "best.pth", overrides={"clip_path": ""})
    assert run.model.llm is not None and run.args.num_answers == 4


def test_f30k_karpathy_train_then_arrow_evaluate_with_score_cache(tmp_path, tokenizer_dir):
    karpathy = write_f30k_karpathy(tmp_path / "f30k", n_train=4, n_test=3, empty_caption=True)
    arrow = write_f30k_arrow(tmp_path / "f30k_arrow", n_train=2, n_test=3)
    out = tmp_path / "run"
    train_run(["--dataset", "f30k", "--data-format", "json", "--data-path", karpathy, "--tokenizer", tokenizer_dir,
               "--draw-false-text", "2", "--output-dir", out, "--epochs", "1", *QUICK])
    row = runlog.read_log(out)[-1]
    assert row["skipped_train_empty_caption"] == 1 and row["skipped_eval_empty_caption"] == 1
    assert {"train_irtr", "train_itm", "test_ir_r1", "test_tr_r10", "test_rsum"} <= row.keys()
    assert row["test_tr_r5"] == 100.0 and row["test_ir_r5"] == 100.0  # 3 images, 6 captions: top-5 covers

    cache = tmp_path / "scores"
    argv = ["--resume", str(out / "best.pth"), "--data-format", "arrow", "--data-path", str(arrow),
            "--score-cache", str(cache)]
    results = tmp_path / "r1.json"
    evaluate.run([*argv, "--results", str(results)])
    first = json.loads(results.read_text())
    assert first["test_ir_r1"] == pytest.approx(row["test_ir_r1"])  # same test images and captions as Karpathy
    saved = torch.load(cache / "scores_rank0of1.pt", weights_only=True)
    assert sorted(saved["rows"]) == [0, 1, 2] and saved["rows"][0].shape == (6,)
    # a rerun reads the cached rows instead of scoring: plant a row that makes image 0 find its caption first
    saved["rows"][0] = torch.tensor([9.0, 8.0, 0.0, 0.0, 0.0, 0.0])
    saved["rows"][1] = torch.tensor([0.0, 0.0, 9.0, 8.0, 0.0, 0.0])
    saved["rows"][2] = torch.tensor([0.0, 0.0, 0.0, 0.0, 9.0, 8.0])
    torch.save(saved, cache / "scores_rank0of1.pt")
    evaluate.run([*argv, "--results", str(results)])
    assert json.loads(results.read_text())["test_tr_r1"] == 100.0

    # bi-encoder pre-ranking (top-2 per image and per caption), reported against the exhaustive scoring
    evaluate.run(["--resume", str(out / "best.pth"), "--prerank-k", "2", "--compare-exhaustive", "--results",
                  str(results)])
    pre = json.loads(results.read_text())
    assert 0 < pre["test_prerank_pairs"] < 100 and 0 <= pre["test_prerank_ir_cover"] <= 100
    assert pre["test_exhaustive_ir_r1"] == pytest.approx(first["test_ir_r1"])
    assert pre["test_prerank_delta_ir_r1"] == pytest.approx(pre["test_ir_r1"] - pre["test_exhaustive_ir_r1"])


def expect_exit(argv, code, capsys, fragment):
    with pytest.raises(SystemExit) as exc:
        train_run(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and fragment in err[-1] and "Traceback" not in "\n".join(err)


def test_bad_inputs_exit_with_their_code(tmp_path, tokenizer_dir, capsys):
    data = write_vqa_arrow(tmp_path / "arrow", n_train=2, n_val=1)
    base = ["--dataset", "vqav2", "--tokenizer", tokenizer_dir, "--output-dir", tmp_path / "out", "--epochs", "1",
            *QUICK]
    expect_exit([*base, "--data-path", tmp_path / "nowhere"], 4, capsys, "--data-path")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "vqav2_train.arrow").write_bytes(b"garbage")
    expect_exit([*base, "--data-path", tmp_path / "broken"], 4, capsys, "vqav2_train.arrow")
    expect_exit([*base, "--data-path", data, "--clip-path", tmp_path / "none.pt"], 2, capsys, "--clip-path")
    bad_clip = tmp_path / "clip.pt"
    torch.save({"visual.conv1.weight": torch.zeros(32, 3, 16, 16)}, bad_clip)
    expect_exit([*base, "--data-path", data, "--clip-path", bad_clip], 1, capsys, "clip")
    expect_exit([*base, "--data-path", data, "--llm-variant", "frozen", "--llm-path", tmp_path / "arrow"], 5, capsys,
                "--llm-path")
    no_tok = [a for a in base if a not in ("--tokenizer", tokenizer_dir)]
    expect_exit([*no_tok, "--data-path", data], 2, capsys, "--tokenizer")


def test_unreadable_images_are_skipped_and_counted():
    assert inputs.open_image(b"\x00garbage") is None
    batch = inputs.collate([inputs.skip("unreadable_image"), {"x": torch.ones(2)}, inputs.skip("unreadable_image")])
    assert batch["skipped"] == {"unreadable_image": 2} and batch["x"].shape == (1, 2)


def test_transform_is_meter_clip(tmp_path):
    image = picture("red", size=48)
    x = inputs.image_transform(32, train=False)(image)
    assert x.shape == (3, 32, 32)
    ref = (torch.tensor([220, 30, 30]) / 255.0 - torch.tensor(inputs.CLIP_MEAN)) / torch.tensor(inputs.CLIP_STD)
    torch.testing.assert_close(x[:, 16, 16], ref, atol=0.05, rtol=0)
    assert Path(tmp_path).is_dir()
