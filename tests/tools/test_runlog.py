"""tools.runlog: a run's task comes from its config's ``task`` key (what the engine writes), then the log rows'
``task``; the preset path is a fallback only for older runs, and only names a task common.task knows."""

import json

import yaml

from tools.runlog import load_run


def write_run(folder, config=None, rows=()):
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "log.txt").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return load_run(folder)


def test_task_from_the_config_key_first(tmp_path):
    run = write_run(tmp_path / "a", {"task": "vqa_2d", "config": "image_cls/configs/vit_small_llama.yaml",
                                     "llm_variant": "none", "epochs": 2}, [{"epoch": 0, "task": "point_cloud"}])
    assert (run.task, run.variant, run.preset, run.status) == ("vqa_2d", "baseline", "vit_small_llama", "partial 1/2")


def test_task_from_the_log_rows_when_the_config_has_none(tmp_path):
    run = write_run(tmp_path / "b", {"config": "image_cls/configs/vit_small_llama.yaml"},
                    [{"epoch": 0, "task": "point_cloud", "test_acc1": 50.0}])
    assert run.task == "point_cloud"
    run = write_run(tmp_path / "c", None, [{"epoch": 0, "task": "action_recognition"}])
    assert run.task == "action_recognition" and "config.yaml missing" in run.issues


def test_preset_path_only_for_old_runs_of_known_tasks(tmp_path):
    old = write_run(tmp_path / "d", {"config": "/abs/repo/point_cloud/configs/modelnet40_1k_llama.yaml"},
                    [{"epoch": 0}])
    assert old.task == "point_cloud"
    stranger = write_run(tmp_path / "e", {"config": "my_experiments/configs/x.yaml"}, [{"epoch": 0}])
    assert stranger.task == "unknown"
