"""End to end on CPU: train (tiny sizes, tiny LLaMA block) -> evaluate the run and a released-style model.pth;
bad inputs as one line and the error family's exit code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from task_smoke import TINY_MODEL, smoke_argv

from common.engine import loop
from vqa_3d import evaluate, train
from vqa_3d.task import TASK


def run_evaluate(argv: list[str]) -> None:
    loop.run_cli(evaluate.main, evaluate.build_parser(), argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("vqa3d_run")
    argv = smoke_argv(root, tiny_llama_dir)
    torch.set_num_threads(1)
    train.run([*argv, "--output-dir", str(root / "run"), "--epochs", "1"])
    return root, argv


def test_train_writes_a_run_with_the_vocabulary_and_table_e_metrics(trained):
    root, _ = trained
    run = root / "run"
    log = [json.loads(line) for line in (run / "log.txt").read_text().splitlines()]
    assert {"test_em1", "test_em10", "test_em1_what", "test_n_others", "train_answer_loss", "train_vote_loss",
            "train_aux_loss"} <= set(log[0])
    assert log[0]["test_n"] == 8 and log[0]["skipped_test_missing_scene"] == 8
    vocab = json.loads((run / "answer_vocab.json").read_text())
    assert sorted(vocab) == list(vocab) and vocab["yes"] == 4
    saved = torch.load(run / "best.pth", weights_only=True)["config"]  # sizes written back by build_data
    assert saved["num_answers"] == len(vocab) == 7 and saved["lang_emb_size"] == 8
    assert saved["answer_vocab"] == str(run / "answer_vocab.json") and saved["input_feature_dim"] == 4


def test_evaluate_reloads_the_run_and_prints_the_table(trained, capsys):
    root, _ = trained
    run_evaluate(["--checkpoint", str(root / "run" / "best.pth"), "--split", "val", "--num-workers", "0",
                  "--results", str(root / "val.json")])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| EM@1 | EM@10 | What | Is | How | Can | Which | Others |"
    assert out[2] == "| n=8 | n=8 | n=1 | n=2 | n=1 | n=1 | n=1 | n=2 |"
    result = json.loads(out[-1])
    assert result == json.loads((root / "val.json").read_text())
    assert 0 <= result["test_em1"] <= result["test_em10"] <= 100 and result["test_n_is"] == 2


def test_a_released_style_state_dict_evaluates_through_the_named_map(trained, tmp_path, capsys):
    root, argv = trained
    parser = TASK.build_parser()
    args = parser.parse_args([*argv[:argv.index("--llm-variant")], "--llm-variant", "none",
                              "--answer-vocab", str(root / "run" / "answer_vocab.json"), "--output-dir",
                              str(tmp_path)])
    TASK.vocab_and_glove(args, None, [])
    state = TASK.build_model(args).state_dict()
    state["s_feat_linear.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "model.pth")
    run_evaluate([*argv[:argv.index("--llm-variant")], "--released", str(tmp_path / "model.pth"), "--answer-vocab",
                  str(root / "run" / "answer_vocab.json"), "--split", "test"])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["test_n"] == 8


def test_bad_inputs_exit_with_one_line(trained, tmp_path, capsys):
    root, argv = trained
    with pytest.raises(SystemExit) as e:
        train.run([*argv, "--sqa-path", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "a")])
    assert e.value.code == 4 and capsys.readouterr().err.strip().count("\n") == 0
    evil = tmp_path / "glove.p"
    evil.write_bytes(pickle.dumps({"a": np.zeros(2), "b": np.float32}))
    with pytest.raises(SystemExit) as e:
        train.run([*argv, "--glove", str(evil), "--output-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 4 and "will not be unpickled" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        run_evaluate(["--checkpoint", str(tmp_path / "missing.pth")])
    assert e.value.code == 1 and "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train.run([*argv, *TINY_MODEL[:2], "--hidden-size", "30", "--output-dir", str(tmp_path / "c")])
    assert e.value.code == 2 and "not divisible by --mcan-num-heads" in capsys.readouterr().err
