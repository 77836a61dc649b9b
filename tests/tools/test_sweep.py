"""tools.sweep: the command lines of a sweep (dry run) for every registered task, and its input checks."""

import shlex
import sys

import pytest

from common.task import available_tasks, get_task
from tools import sweep


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "vit_small_llama.yaml"
    path.write_text("epochs: 1\n")
    return path


def _lines(capsys):
    return [shlex.split(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_local_dry_run(preset, capsys):
    code = sweep.main(["--task", "image_cls", "--preset", str(preset), "--variants",
                       "baseline,frozen,mlp,random_frozen", "--seeds", "0,1,2", "--dry-run", "--",
                       "--epochs", "2", "--data-path", "/d"])
    assert code == 0
    lines = _lines(capsys)
    assert len(lines) == 12
    assert lines[0] == [sys.executable, "-m", "image_cls.train", "--config", str(preset), "--llm-variant", "none",
                        "--seed", "0", "--output-dir", "runs/vit_small_llama/baseline/seed0", "--resume", "auto",
                        "--epochs", "2", "--data-path", "/d"]
    assert [(line[6], line[8], line[10]) for line in lines[3:5]] == [
        ("frozen", "0", "runs/vit_small_llama/frozen/seed0"), ("frozen", "1", "runs/vit_small_llama/frozen/seed1")]
    assert lines[-1][6] == "random_frozen" and lines[-1][10] == "runs/vit_small_llama/random_frozen/seed2"


def test_torchrun_and_slurm_dry_run(preset, capsys, monkeypatch):
    monkeypatch.chdir(sweep.REPO_ROOT)
    assert sweep.main(["--task", "image_cls", "--preset", str(preset), "--variants", "mlp", "--seeds", "3",
                       "--launcher", "torchrun", "--runs-root", "out", "--no-resume", "--dry-run"]) == 0
    assert _lines(capsys) == [["tools/dist_train.sh", "image_cls.train", "--config", str(preset), "--llm-variant",
                               "mlp", "--seed", "3", "--output-dir", "out/vit_small_llama/mlp/seed3"]]
    assert sweep.main(["--task", "point_cloud", "--preset", str(preset), "--variants", "baseline", "--seeds", "0",
                       "--launcher", "slurm", "--dry-run"]) == 0
    (line,) = _lines(capsys)
    assert line[:4] == ["env", "JOB_NAME=vit_small_llama-baseline-s0", "tools/slurm_train.sh", "point_cloud.train"]
    assert (sweep.REPO_ROOT / "tools" / "slurm_train.sh").is_file()
    assert (sweep.REPO_ROOT / "tools" / "dist_train.sh").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--variants", "baseline,bogus"], "unknown variant(s) bogus"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--seeds", "1,1"], "must not repeat"),
])
def test_bad_input(preset, capsys, argv, message):
    assert sweep.main(["--task", "image_cls", "--preset", str(preset), "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_preset_and_task(preset, tmp_path, capsys):
    assert sweep.main(["--task", "image_cls", "--preset", str(tmp_path / "nope.yaml"), "--dry-run"]) == 2
    assert "not found" in capsys.readouterr().err
    assert sweep.main(["--task", "image_cls", "--preset", "no_such_preset", "--dry-run"]) == 2
    assert "preset no_such_preset not found: image_cls has vit_base_baseline" in capsys.readouterr().err
    assert sweep.main(["--task", "no_such_task", "--preset", str(preset), "--dry-run"]) == 2
    assert "unknown task 'no_such_task'; built tasks: image_cls" in capsys.readouterr().err
    assert sweep.main(["--preset", str(preset), "--dry-run"]) == 2  # a preset outside <task>/configs/
    assert "give --task" in capsys.readouterr().err


def test_every_registered_task_is_known():
    assert {"image_cls", "point_cloud", "action_recognition"} <= set(available_tasks())


@pytest.mark.parametrize("name", available_tasks())
def test_dry_run_of_each_task_by_preset_name(name, capsys, monkeypatch):
    """Every registered task sweeps from one of its own presets given by name; the task is also read off a preset
    path when --task is left out."""
    monkeypatch.chdir(sweep.REPO_ROOT)
    task = get_task(name)
    assert task.presets, f"{name} has no presets"
    preset = task.presets[0]
    assert sweep.main(["--task", name, "--preset", preset.stem, "--variants", "baseline,frozen", "--seeds", "0",
                       "--dry-run"]) == 0
    lines = _lines(capsys)
    relative = str(preset.relative_to(sweep.REPO_ROOT))
    assert [line[:5] for line in lines] == [[sys.executable, "-m", f"{name}.train", "--config", relative]] * 2
    assert [line[6] for line in lines] == ["none", "frozen"]
    assert lines[1][10] == f"runs/{preset.stem}/frozen/seed0"
    assert (sweep.REPO_ROOT / name / "train.py").is_file()
    assert sweep.main(["--preset", relative, "--variants", "mlp", "--dry-run"]) == 0
    assert _lines(capsys)[0][2] == f"{name}.train"
