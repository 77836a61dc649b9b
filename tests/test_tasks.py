"""Every registered task (``common.task.available_tasks()``) through the same paces: build, one training epoch on
its smoke fixture (``tests/<task>/task_smoke.py``), evaluate-only from the checkpoint, reload the trained run
strictly, analyse one input, and the same bad inputs with the error family's exit code and one line on stderr.

A new task is covered by registering it (``<task>/task.py`` with ``TASK``) and writing its ``task_smoke.py``:
``smoke_argv(tmp_path, llm_dir) -> list[str]`` (tiny data in the real format + tiny model flags) and, optionally,
``analysis_paths(tmp_path) -> list[Path]`` (inputs for ``Task.analysis_samples``) and ``DATA_FLAGS`` (the flags
whose paths the missing-data case breaks; default: every existing path of the smoke run but the LLM's).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from common.engine import checkpoint, config, runner
from common.engine.errors import CheckpointError, ConfigError, DataPathError, LLMCheckpointError
from common.task import TASK_NAMES, Task, available_tasks, get_task

TESTS = Path(__file__).resolve().parent
TASKS = available_tasks()


def smoke_module(name: str) -> ModuleType:
    path = TESTS / name / "task_smoke.py"
    if not path.is_file():
        pytest.fail(f"{name} is registered but has no {path.relative_to(TESTS.parent)} (smoke_argv)")
    spec = importlib.util.spec_from_file_location(f"task_smoke_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(task: Task, argv: list[str]) -> None:
    task.train([str(a) for a in argv])


def error_of(task: Task, argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, the one error line) of a run that must fail; a traceback or several error lines fail the test."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train(task, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    return exit_info.value.code, lines[0]


@pytest.fixture(scope="module", params=TASKS)
def trained(request, tmp_path_factory, tiny_llama_dir) -> dict:
    """One epoch of each task's smoke run (shared by the tests of this module)."""
    name = request.param
    task = get_task(name)
    tmp = tmp_path_factory.mktemp(f"smoke_{name}")
    smoke = smoke_module(name)
    argv = [*smoke.smoke_argv(tmp, tiny_llama_dir), "--seed", "0"]
    out = tmp / "run"
    torch.manual_seed(0)
    train(task, [*argv, "--output-dir", out, "--epochs", "1"])
    return {"name": name, "task": task, "argv": argv, "out": out, "tmp": tmp, "smoke": smoke}


def test_the_registry_lists_built_tasks_in_order():
    assert TASKS == [name for name in TASK_NAMES if name in TASKS] and set(TASKS) >= {
        "image_cls", "point_cloud", "action_recognition"}
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.best_mode in ("max", "min") and task.best_metric in task.metrics
        assert task.graft and task.presets, f"{name}: graft line and presets"
        rows = task.paper_rows
        assert rows and set(rows) <= {p.stem for p in task.presets} and all(rows.values()), name


def test_one_epoch_writes_the_task_into_config_and_log(trained):
    task, out = trained["task"], trained["out"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["task"] == task.name
    rows = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["task"] == task.name and rows[0]["epoch"] == 0
    assert f"test_{task.best_metric}" in rows[0] and rows[0][f"best_{task.best_metric}"] is not None
    assert (out / "checkpoint.pth").is_file() and (out / "best.pth").is_file()
    # The run's config.yaml is a preset of this task that rebuilds the same config ...
    args = config.parse_args(task.build_parser(), ["--config", str(out / "config.yaml")])
    assert {k: v for k, v in config.config_to_dict(args).items() if k != "config"} == {
        k: v for k, v in saved.items() if k != "config"}
    # ... and the parser of another task refuses it by name.
    other = next((get_task(n) for n in TASKS if n != task.name), None)
    if other is not None:
        with pytest.raises(SystemExit):
            config.parse_args(other.build_parser(), ["--config", str(out / "config.yaml")])


def test_evaluate_only_from_the_checkpoint_gives_the_logged_metrics(trained, capsys):
    task, out = trained["task"], trained["out"]
    logged = json.loads((out / "log.txt").read_text().splitlines()[-1])
    capsys.readouterr()
    train(task, [*trained["argv"], "--output-dir", trained["tmp"] / "eval", "--resume", out / "checkpoint.pth",
                 "--eval-only"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    key = f"test_{task.best_metric}"
    assert printed[key] == pytest.approx(logged[key], rel=1e-5, abs=1e-6)


def test_load_run_rebuilds_the_trained_model_strictly(trained):
    task, out = trained["task"], trained["out"]
    run = runner.load_run(task, out / "best.pth")
    assert not run.model.training and run.args.task == task.name and run.weights == "model"
    saved = checkpoint.load(out / "best.pth")["model"]
    state = run.model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    with pytest.raises(CheckpointError, match="no 'ema' weights"):
        runner.load_run(task, out / "best.pth", use_ema=True)


def test_projection_init_flag_reaches_every_adapter(trained):
    """``--llm-proj-init orthogonal`` (a shared ``--llm-*`` flag) draws every adapter of the task's model as an
    identity pair: ``out_proj`` is ``in_proj``'s transpose."""
    from common.frozen_lm import LLMAdapter

    task = trained["task"]
    run_config = str(trained["out"] / "config.yaml")  # the smoke run's, with what its data decided
    args = config.parse_args(task.build_parser(), ["--config", run_config, "--llm-proj-init", "orthogonal"])
    adapters = [m for m in task.build_model(args).modules() if isinstance(m, LLMAdapter)]
    assert adapters, f"{task.name}: the smoke model has no LLM adapter"
    for adapter in adapters:
        assert torch.equal(adapter.out_proj.weight, adapter.in_proj.weight.T)


def test_analysis_hooks_map_one_input(trained):
    paths_of = getattr(trained["smoke"], "analysis_paths", None)
    if paths_of is None:
        pytest.skip(f"{trained['name']}: task_smoke.py gives no analysis_paths")
    from tools.analysis.maps import capture_tokens, maps_from_capture

    task = trained["task"]
    run = runner.load_run(task, trained["out"] / "best.pth")
    samples = task.analysis_samples(run.args, [str(p) for p in paths_of(trained["tmp"] / "analysis")])
    assert samples
    for sample in samples:
        spec = task.analysis_spec(run.model, sample.inputs)
        assert {"encoder", "in_proj", "out_proj"} <= set(spec.stages)
        maps = maps_from_capture(capture_tokens(run.model, sample.inputs, spec), spec)
        assert set(maps) == set(spec.names())
        for name, values in maps.items():
            assert values.shape[0] == 1 and torch.isfinite(values).all(), name


def test_analyze_cli_draws_one_input(trained, capsys):
    """``python -m tools.analyze`` end to end on the smoke run: the layout's pictures are written."""
    paths_of = getattr(trained["smoke"], "analysis_paths", None)
    if paths_of is None:
        pytest.skip(f"{trained['name']}: task_smoke.py gives no analysis_paths")
    from tools import analyze

    out = trained["tmp"] / "analyze_cli"
    paths = [str(p) for p in paths_of(trained["tmp"] / "analysis_cli_inputs")]
    assert analyze.main(["--resume", str(trained["out"] / "best.pth"), "--inputs", *paths, "--out", str(out),
                         "--measures", "magnitude"]) == 0
    pictures = sorted(out.glob("overlays_magnitude*.png"))
    assert pictures and all(p.stat().st_size > 1000 for p in pictures), capsys.readouterr().out


# ---- the same bad inputs for every task ---------------------------------------------------------------------------
def _replace_data_paths(argv: list[str], tmp: Path, llm_dir: Path, flags: tuple[str, ...] | None) -> list[str]:
    """The data paths of the smoke run pointed at missing ones: the values of ``flags`` (``task_smoke.DATA_FLAGS``),
    else every existing path under ``tmp`` except the LLM's."""
    out = []
    for i, value in enumerate(argv):
        path = Path(str(value))
        if flags is not None:
            chosen = i > 0 and argv[i - 1] in flags
        else:
            chosen = path.is_absolute() and path.exists() and path != Path(llm_dir) and tmp in path.parents
        out.append(str(tmp / "nowhere" / path.name) if chosen else value)
    return out


def test_a_missing_data_path_is_a_data_path_error(trained, tiny_llama_dir, capsys):
    flags = getattr(trained["smoke"], "DATA_FLAGS", None)
    argv = _replace_data_paths(trained["argv"], trained["tmp"], tiny_llama_dir, flags)
    assert argv != trained["argv"]
    out = trained["tmp"] / "bad_data"
    code, line = error_of(trained["task"], [*argv, "--output-dir", out, "--epochs", "1"], capsys)
    assert code == DataPathError.exit_code, line
    assert not (out / "log.txt").exists()


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint"])
def test_a_bad_llm_path_is_an_llm_checkpoint_error(case, trained, tiny_llama_dir, capsys):
    bad = trained["tmp"] / f"llm_{case}"
    if case == "not_a_checkpoint":
        bad.mkdir(exist_ok=True)
        (bad / "README.txt").write_text("no weights here\n")
    argv = [str(bad) if str(v) == str(tiny_llama_dir) else v for v in trained["argv"]]
    code, line = error_of(trained["task"], [*argv, "--output-dir", trained["tmp"] / f"bad_{case}"], capsys)
    assert code == LLMCheckpointError.exit_code and line.startswith("error: --llm-path"), line


def test_a_truncated_checkpoint_is_a_checkpoint_error(trained, capsys):
    good = trained["out"] / "checkpoint.pth"
    cut = trained["tmp"] / "truncated.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, line = error_of(trained["task"], [*trained["argv"], "--output-dir", trained["tmp"] / "cut", "--resume", cut,
                                            "--eval-only"], capsys)
    assert code == CheckpointError.exit_code and str(cut) in line, line


def test_a_wrong_width_checkpoint_names_the_tensor(trained, capsys):
    state = checkpoint.load(trained["out"] / "checkpoint.pth")
    two_d = [k for k, v in state["model"].items() if v.ndim == 2]
    key = next((k for k in two_d if k.endswith("in_proj.weight")), two_d[0])  # the adapter's first projection
    weight = state["model"][key]
    state["model"][key] = torch.cat([weight, weight[:, :1]], dim=1)  # one input column too many
    wide = trained["tmp"] / "wide" / "checkpoint.pth"
    wide.parent.mkdir(exist_ok=True)
    checkpoint.save(wide, state)
    code, line = error_of(trained["task"], [*trained["argv"], "--output-dir", trained["tmp"] / "wide_eval",
                                            "--resume", wide, "--eval-only"], capsys)
    assert code == CheckpointError.exit_code and key in line, line


def test_a_bad_config_value_is_a_config_error(trained, capsys):
    code, line = error_of(trained["task"], [*trained["argv"], "--output-dir", trained["tmp"] / "cfg", "--epochs", "0"],
                          capsys)
    assert code == ConfigError.exit_code and "--epochs" in line, line


def test_a_resumed_run_continues_from_its_checkpoint(trained):
    run_dir = trained["tmp"] / "resumed"
    shutil.copytree(trained["out"], run_dir)
    train(trained["task"], [*trained["argv"], "--output-dir", run_dir, "--epochs", "2", "--resume", "auto"])
    rows = [json.loads(line) for line in (run_dir / "log.txt").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


def test_freeze_encoder_trains_only_the_adapter_and_the_head(trained):
    """--freeze-encoder, every task: only the LLM adapter and ``Task.head_prefixes`` reach the optimizer."""
    task = trained["task"]
    out = trained["tmp"] / "frozen_encoder"
    train(task, [*trained["argv"], "--output-dir", out, "--epochs", "1", "--freeze-encoder"])
    state = checkpoint.load(out / "checkpoint.pth")
    names = [n for g in state["optimizer"]["param_groups"] for n in g["param_names"]]
    heads = [n for n in names if n.startswith(task.head_prefixes)]
    assert heads, f"{task.name}: no parameter matches head_prefixes {task.head_prefixes} (set it on the Task)"
    from common.frozen_lm import LLMAdapter

    model = runner.load_run(task, out / "checkpoint.pth").model
    adapters = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, LLMAdapter))
    assert adapters and all(n.startswith((*adapters, *task.head_prefixes)) for n in names), names
    assert any(n.startswith(adapters) for n in names)
    moved = [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and not f"{n}.".startswith((*adapters, *task.head_prefixes)) and m.num_batches_tracked > 0]
    assert not moved, f"{task.name}: the frozen encoder's batch-norm statistics moved in {moved}"
