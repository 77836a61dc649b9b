"""``--data-pipeline`` switch and the DALI path's config checks: these run without DALI installed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from train_helpers import train_argv

from image_cls import evaluate, train
from image_cls.data import dali
from image_cls.data.loaders import check_pipeline_config
from image_cls.options import build_parser


@pytest.fixture
def no_dali(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``nvidia.dali`` unimportable, whether or not it is installed."""
    real = importlib.import_module

    def fake(name: str, *args, **kwargs):
        if name.startswith("nvidia.dali"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(dali.importlib, "import_module", fake)


def _args(*extra: str):
    return build_parser().parse_args(["--data-path", "/nonexistent", *extra])


def test_default_is_cpu_and_flag_and_yaml_select_a_pipeline(tmp_path: Path) -> None:
    assert _args().data_pipeline == "cpu"
    assert _args("--data-pipeline", "dali").data_pipeline == "dali"
    preset = tmp_path / "preset.yaml"
    preset.write_text("data_pipeline: dali\nrepeated_aug: false\n")
    from common.engine import config

    args = config.parse_args(build_parser(), ["--config", str(preset)])
    assert (args.data_pipeline, args.repeated_aug) == ("dali", False)
    assert _args("--data-pipeline", "gpu").data_pipeline == "gpu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--data-pipeline", "tpu"])


def test_missing_dali_is_one_line_error_naming_the_package(no_dali) -> None:
    with pytest.raises(dali.DaliUnavailable, match="pip install nvidia-dali-cuda120") as err:
        check_pipeline_config(_args("--data-pipeline", "dali", "--no-repeated-aug"))
    assert "\n" not in str(err.value) and "dali" in str(err.value)


def test_train_cli_exits_2_without_dali(no_dali, imagenet_folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    argv = train_argv(imagenet_folder, tmp_path / "run", "--data-pipeline", "dali", "--no-repeated-aug")
    with pytest.raises(SystemExit) as exit_info:
        train.run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install nvidia-dali-cuda120" in err[0]
    assert not (tmp_path / "run" / "log.txt").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (("--no-repeated-aug", "--dataset", "digits"), "ImageNet folders or tars only"),
    (("--no-repeated-aug", "--aa", "v0"), "RandAugment"),
    (("--no-repeated-aug", "--input-size", "32"), "input-size"),
])
def test_unsupported_settings_are_config_errors(no_dali, extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_pipeline_config(_args("--data-pipeline", "dali", *extra))


def test_rand_augment_string_parsing() -> None:
    assert dali._rand_augment_args("rand-m9-mstd0.5-inc1") == (2, 9)
    assert dali._rand_augment_args("rand-n3-m7") == (3, 7)


def test_evaluate_cli_exits_2_without_dali(no_dali, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--resume", str(tmp_path / "checkpoint.pth"), "--device", "cpu", "--data-pipeline", "dali"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install nvidia-dali-cuda120" in err[0]
