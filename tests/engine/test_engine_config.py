"""config: YAML presets as argparse defaults, CLI overrides, strict keys, resolved config on disk."""

from __future__ import annotations

import argparse

import pytest
import yaml

from common.engine import config


def _parser() -> argparse.ArgumentParser:
    parser = config.make_parser("test")
    parser.add_argument("--data-path", default="data/")
    parser.add_argument("--llm-layers", type=int, nargs="+", default=[-1])
    return parser


def _preset(tmp_path, text: str):
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_then_yaml_then_command_line(tmp_path):
    preset = _preset(tmp_path, "epochs: 7\nlr: 1e-3\nmodel_ema: true\nllm_layers: [30, '31']\namp: bf16\n")
    args = config.parse_args(_parser(), ["--config", preset])
    assert (args.epochs, args.lr, args.model_ema, args.llm_layers, args.amp) == (7, 1e-3, True, [30, 31], "bf16")
    assert args.batch_size == 64 and args.config == preset  # untouched default, and where the preset came from

    args = config.parse_args(_parser(), ["--config", preset, "--epochs", "2", "--no-model-ema", "--amp", "none"])
    assert (args.epochs, args.model_ema, args.amp, args.lr) == (2, False, "none", 1e-3)


def test_lr_multipliers_accept_a_yaml_mapping(tmp_path):
    preset = _preset(tmp_path, "lr_mult:\n  '*.in_proj.*': 10\n  head: 0.5\n")
    args = config.parse_args(_parser(), ["--config", preset])
    assert args.lr_mult == ["*.in_proj.*=10", "head=0.5"]
    assert config.parse_args(_parser(), ["--config", preset, "--lr-mult"]).lr_mult == []


@pytest.mark.parametrize(("text", "message"), [
    ("epochz: 3\n", "unknown key 'epochz' (no such option; did you mean 'epochs'?)"),
    ("batch-size: 3\n", "unknown key 'batch-size' (no such option; did you mean 'batch_size'?)"),
    ("epochs: three\n", "key 'epochs': invalid literal"),
    ("epochs: 2.5\n", "key 'epochs': expected an integer"),
    ("amp: fp8\n", "key 'amp': 'fp8' is not one of none, bf16, fp16"),
    ("model_ema: 1\n", "key 'model_ema': expected true or false"),
    ("opt_betas: [0.9]\n", "key 'opt_betas': expected 2 values, got 1"),
    ("lr_mult: ['nofactor']\n", "key 'lr_mult': expected PATTERN=FACTOR"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_presets_exit_with_a_message_naming_the_key(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exc:
        config.parse_args(_parser(), ["--config", _preset(tmp_path, text)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_preset_file_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        config.parse_args(_parser(), ["--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in capsys.readouterr().err


def test_saved_config_is_resolved_and_reloads_as_a_preset(tmp_path):
    preset = _preset(tmp_path, "epochs: 7\nopt_betas: [0.8, 0.9]\n")
    args = config.parse_args(_parser(), ["--config", preset, "--lr", "0.25", "--output-dir", str(tmp_path / "run")])
    path = config.save_config(args, args.output_dir)
    saved = yaml.safe_load(path.read_text())
    assert saved["epochs"] == 7 and saved["lr"] == 0.25 and saved["opt_betas"] == [0.8, 0.9]
    assert saved["data_path"] == "data/" and saved["config"] == preset
    again = config.parse_args(_parser(), ["--config", str(path)])
    assert vars(again) == {**vars(args), "config": str(path)}


def test_base_overlays_resolve_in_order_and_the_preset_wins(tmp_path):
    (tmp_path / "_base").mkdir()
    (tmp_path / "_base" / "recipe.yaml").write_text("lr: 0.1\nepochs: 7\nseed: 3\n")
    (tmp_path / "_base" / "long.yaml").write_text("base: recipe.yaml\nepochs: 70\n")
    (tmp_path / "row.yaml").write_text("base: [_base/long.yaml]\nseed: 5\n")
    assert config.read_preset(tmp_path / "row.yaml") == {"lr": 0.1, "epochs": 70, "seed": 5}
    args = config.parse_args(config.make_parser("t"), ["--config", str(tmp_path / "row.yaml"), "--lr", "0.2"])
    assert (args.lr, args.epochs, args.seed) == (0.2, 70, 5)


@pytest.mark.parametrize("text,message", [
    ("base: row.yaml\n", "'base:' cycle"),
    ("base: missing.yaml\n", "missing.yaml: No such file or directory"),
    ("base: [1]\n", "'base:' must be a preset file"),
    ("base: other.yaml\n", "unknown key 'learning_rate'"),
])
def test_bad_base_overlays_are_one_line_errors(tmp_path, capsys, text, message):
    (tmp_path / "other.yaml").write_text("learning_rate: 0.1\n")
    (tmp_path / "row.yaml").write_text(text)
    with pytest.raises(SystemExit) as info:
        config.parse_args(config.make_parser("t"), ["--config", str(tmp_path / "row.yaml")])
    assert info.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_task_may_declare_a_common_flag_again():
    parser = config.make_parser("t")
    parser.add_argument("--opt", default="adam", choices=("adam", "adamw"), help="upstream: Adam")
    assert parser.parse_args([]).opt == "adam"
    with pytest.raises(SystemExit):
        parser.parse_args(["--opt", "sgd"])
    assert [a.dest for a in parser._actions].count("opt") == 1
