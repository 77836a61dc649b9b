"""tools.compare on fixture run directories written by the engine's own writers: complete, in-progress,
truncated, corrupt, config-less and log-less runs; several seeds -> mean ± sample std."""

import argparse
import json
import statistics

import pytest

from common.engine import config as engine_config
from common.engine.logging import RunLog
from tools import compare
from tools.paper import load_paper_table
from tools.runlog import load_run, parse_seconds

BASELINE_ACC = {0: [60.0, 71.5, 70.0], 1: [61.0, 65.0, 71.0], 2: [62.0, 70.0, 72.5]}
FROZEN_ACC = {0: [63.0, 70.0, 72.0], 1: [64.0, 71.0, 73.0]}


def _write_run(directory, config, accs, metric="test_acc1", params=(22_050_000, 0), extra_text=None):
    if config is not None:
        engine_config.save_config(argparse.Namespace(**config), directory)
    log = RunLog(directory)
    for epoch, acc in enumerate(accs):
        log.write({"epoch": epoch, "train_lr": 1e-3, "train_loss": 2.0 - 0.1 * epoch, metric: acc,
                   "test_loss": 1.5 - 0.05 * epoch, "n_parameters": sum(params), "n_trainable": params[0],
                   "n_frozen": params[1], "epoch_time": 10.0})
    if extra_text is not None:
        with open(directory / "log.txt", "a") as f:
            f.write(extra_text)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, accs in BASELINE_ACC.items():
        _write_run(root / "vit_small_baseline" / "baseline" / f"seed{seed}", {
            "config": "image_cls/configs/vit_small_baseline.yaml", "model": "vit_small_patch16_224_llm",
            "llm_variant": "none", "llm_path": None, "epochs": 300, "seed": seed}, accs)
    for seed, accs in FROZEN_ACC.items():
        _write_run(root / "vit_small_llama" / "frozen" / f"seed{seed}", {
            "config": "image_cls/configs/vit_small_llama.yaml", "model": "vit_small_patch16_224_llm",
            "llm_variant": "frozen", "llm_path": "/ckpt/llama-7b", "epochs": 300, "seed": seed},
            accs, params=(25_200_000, 202_400_000))
    # a finished point-cloud run whose last line was cut mid-write
    _write_run(root / "pc_objbg" / "mlp" / "seed0", {
        "config": "/abs/repo/point_cloud/configs/pointbert_objbg.yaml", "model": "point_bert", "llm_variant": "mlp",
        "epochs": 2, "seed": 0}, [80.0, 84.25], metric="test_acc", extra_text='{"epoch": 2, "train_loss": 1.')
    # no config.yaml, and stray non-record lines inside the log
    (root / "corrupt").mkdir()
    (root / "corrupt" / "log.txt").write_text(
        json.dumps({"epoch": 0, "test_acc1": 50.0}) + "\nTraceback (most recent call last):\n[1, 2]\n"
        + json.dumps({"epoch": 1, "test_acc1": 55.0}) + "\n")
    # config only: a run that has not logged an epoch yet
    engine_config.save_config(argparse.Namespace(config="image_cls/configs/vit_tiny_mlp.yaml",
                                                 model="vit_tiny_patch16_224_llm", llm_variant="mlp", epochs=3,
                                                 seed=0), root / "starting")
    return root


def test_groups_seeds_and_mean_std(runs):
    report = compare.build_report([runs])
    names = [(g.task, g.name, len(g.runs)) for g in report.groups]
    assert names == [
        ("image_cls", "vit_small_baseline/baseline", 3),
        ("image_cls", "vit_small_llama/frozen", 2),
        ("image_cls", "vit_tiny_mlp/mlp", 1),
        ("point_cloud", "pointbert_objbg/mlp", 1),
        ("unknown", "unknown/unknown", 1),
    ]
    base, frozen = report.groups[0], report.groups[1]
    finals = [accs[-1] for accs in BASELINE_ACC.values()]
    bests = [max(accs) for accs in BASELINE_ACC.values()]
    assert base.final["test_acc1"].mean == pytest.approx(statistics.fmean(finals))
    assert base.final["test_acc1"].std == pytest.approx(statistics.stdev(finals))
    assert base.best["test_acc1"].mean == pytest.approx(statistics.fmean(bests))
    assert base.final["test_acc1"].n == 3
    assert frozen.baseline is base  # other preset, same model and recipe
    assert report.groups[2].baseline is None  # ViT-T MLP: no ViT-T baseline among the runs
    delta = report.delta(frozen, "test_acc1")  # paired over the seeds both ran (0, 1): 72 - 70, 73 - 71
    assert delta.paired and delta.seeds == [0, 1]
    assert delta.mean == pytest.approx(2.0) and delta.std == pytest.approx(0.0) and delta.n == 2
    assert frozen.trainable.mean == 25_200_000 and frozen.frozen.mean == 202_400_000
    assert base.wall_s.mean == 30.0 and base.status() == "3× partial 3/300"
    assert base.paper.id == "in1k/vit_s" and frozen.paper.id == "in1k/vit_s_llama"
    assert report.paper_delta(frozen, "test_acc1") == pytest.approx(0.6)


def test_markdown_table_numbers(runs):
    text = compare.render_markdown(compare.build_report([runs]))
    base_row = next(line for line in text.splitlines() if line.startswith("| vit_small_baseline"))
    assert "| 71.17 ± 1.26 | 71.67 ± 0.76 |" in base_row  # final, best of test_acc1 over 3 seeds
    assert "| 22.05M | 0.00M | 3/300 | 30.0 s |" in base_row and "| 80.10 |" in base_row
    assert "| 3× partial 3/300 |" in base_row
    frozen_row = next(line for line in text.splitlines() if line.startswith("| vit_small_llama"))
    assert "| 72.50 ± 0.71 |" in frozen_row and "| 80.70 | +2.00 [+2.00, +2.00] | +0.60 |" in frozen_row
    assert "| 202.40M |" in frozen_row
    pc_row = next(line for line in text.splitlines() if line.startswith("| pointbert_objbg"))
    # matched paper row: ScanObjectNN OBJ_BG +MLP (Table B) 86.5, paper Δ vs Point-BERT 87.4
    assert "| complete |" in pc_row and "| 84.25 | 84.25 |" in pc_row
    assert "| 86.50 |" in pc_row and "| -0.90 |" in pc_row
    assert "## Incomplete runs and problems" in text
    tiny_row = next(line for line in text.splitlines() if line.startswith("| vit_tiny_mlp"))
    assert "| no epochs | – | – | – | – |" in tiny_row  # no ViT-T baseline: no Δ against ViT-S
    assert "truncated last line skipped" in text
    assert "config.yaml missing" in text and "2 line(s) without a JSON epoch record" in text
    assert "starting: no epochs; log.txt missing" in text


def test_paper_rows_match_presets():
    paper = load_paper_table()
    cfg = {"model": "vit_small_patch16_224_llm", "llm_variant": "frozen", "epochs": 300, "llm_path": "/w/LLaMA/7B",
           "llm_layers": [-1]}
    assert paper.match("image_cls", cfg, "vit_small_llama").metrics == {"test_acc1": 80.7}
    two = dict(cfg, epochs=100, llm_layers=[-2, -1])
    assert paper.match("image_cls", two, "vit_small_100ep_llama2").value("test_acc1") == 77.10
    assert paper.match("image_cls", dict(cfg, llm_layers=[-2, -1]), "x") is None  # no 300-epoch 2-block number
    head = dict(cfg, epochs=100, llm_position="head")
    assert paper.match("image_cls", head, "x").value("test_acc1") == 72.66
    assert paper.match("image_cls", dict(cfg, model="vit_small_patch32_224_llm"), "x") is None
    assert paper.match("image_cls", dict(cfg, llm_path="/models/smollm2.gguf"), "x") is None
    assert paper.match("image_cls", dict(cfg, epochs=5), "x") is None
    assert paper.higher_is_better("motion_forecasting", "test_min_ade") is False
    assert paper.higher_is_better("image_cls", "test_acc1") is True


def test_out_writes_report_and_pngs(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert compare.main([str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# Run comparison" in printed and "wrote" in printed
    data = json.loads((out / "report.json").read_text())
    base = data["groups"][0]
    assert base["final"]["test_acc1"]["n"] == 3
    assert base["final"]["test_acc1"]["std"] == pytest.approx(statistics.stdev([70.0, 71.0, 72.5]))
    assert data["groups"][1]["paper_row"] == "in1k/vit_s_llama"
    assert data["groups"][1]["paper_delta"] == pytest.approx(0.6)
    assert any("truncated" in p for p in data["problems"])
    assert (out / "report.md").read_text().startswith("# Run comparison")
    for name in ("curves_image_cls.png", "delta_image_cls.png", "curves_point_cloud.png", "curves_unknown.png"):
        png = out / name
        assert png.is_file() and png.stat().st_size > 5000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors(tmp_path, capsys):
    assert compare.main([str(tmp_path / "nope")]) == 2
    assert "no such path" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert compare.main([str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_log_reader_edge_cases(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "log.txt").write_text(
        json.dumps({"epoch": 0, "test_acc1": 1.0, "epoch_time": "0:01:30"}) + "\n"
        + json.dumps({"epoch": 1, "test_acc1": "nan"}) + "\n"  # the engine writes non-finite values as strings
        + json.dumps({"epoch": 0, "test_acc1": 2.0, "epoch_time": "0:01:00"}) + "\n")  # re-logged after a resume
    record = load_run(run)
    assert record.series("test_acc1") == ([0], [2.0]) and record.epochs_done == 2
    assert record.wall_time_s() == 60.0 and record.status == "2 epochs" and record.task == "unknown"
    assert parse_seconds("1 day, 2:00:00") == 93600.0 and parse_seconds(True) is None


def _acc_run(directory, seed, final, variant="frozen", **config):
    _write_run(directory / f"seed{seed}", {
        "config": "image_cls/configs/demo.yaml", "model": "vit_demo_llm", "llm_variant": variant, "epochs": 2,
        "seed": seed, "lr": 1e-3, **config}, [final - 5.0, final])


def test_paired_difference_and_t_interval_by_hand(tmp_path):
    """Per-seed differences 2, 4, -1: mean 5/3, std sqrt(19/3) = 2.5166, t(0.975, 2) = 4.3027 (t table),
    half-width 4.3027 * 2.5166 / sqrt(3) = 6.2516 -> [-4.585, +7.918]; the unpaired std of the frozen runs (2.52)
    or of the baseline (0.58) is not what the interval uses."""
    for seed, (ours, base) in enumerate([(72.0, 70.0), (75.0, 71.0), (70.0, 71.0)]):
        _acc_run(tmp_path / "frozen", seed, ours)
        _acc_run(tmp_path / "baseline", seed, base, variant="none")
    report = compare.build_report([tmp_path])
    base, frozen = report.groups
    delta = report.delta(frozen, "test_acc1")
    assert frozen.baseline is base
    assert delta.mean == pytest.approx(5 / 3) and delta.std == pytest.approx(2.51661, abs=1e-5)
    assert delta.half_width == pytest.approx(6.25158, abs=1e-4)
    assert delta.interval == pytest.approx((-4.58491, 7.91825), abs=1e-4)
    assert compare.fmt_paired(delta, 2) == "+1.67 [-4.58, +7.92]"
    assert report_json_delta(report)["ci95"] == pytest.approx([-4.58491, 7.91825], abs=1e-4)


def report_json_delta(report):
    return next(g for g in compare.report_json(report)["groups"] if g["variant"] == "frozen")["delta"]


def test_unpaired_when_no_seed_is_shared(tmp_path):
    _acc_run(tmp_path / "frozen", 5, 80.0)
    _acc_run(tmp_path / "baseline", 0, 70.0, variant="none")
    _acc_run(tmp_path / "baseline", 1, 72.0, variant="none")
    report = compare.build_report([tmp_path])
    delta = report.delta(report.groups[1], "test_acc1")
    assert not delta.paired and delta.mean == pytest.approx(9.0) and delta.interval is None
    assert compare.fmt_paired(delta, 2) == "+9.00 (unpaired)"


def test_random_inits_are_groups_and_baselines_come_from_the_config(tmp_path):
    """Groups split by llm_random_init; the baseline is found by llm_variant, model and recipe, not by names."""
    _acc_run(tmp_path / "a", 0, 70.0, variant="none")
    _acc_run(tmp_path / "b", 0, 71.0, variant="none", lr=5e-4, config="image_cls/configs/demo_low_lr.yaml")
    _acc_run(tmp_path / "c", 0, 73.0, variant="random_frozen", llm_random_init="normal")
    _acc_run(tmp_path / "d", 0, 74.0, variant="random_frozen", llm_random_init="matched")
    _acc_run(tmp_path / "e", 0, 75.0, variant="mlp", config="image_cls/configs/my_mlp_run.yaml")
    _acc_run(tmp_path / "f", 0, 76.0, variant="mlp", config="image_cls/configs/other_model.yaml", model="vit_x_llm")
    report = compare.build_report([tmp_path])
    groups = {g.preset + "/" + g.variant: g for g in report.groups}
    assert set(groups) == {"demo/baseline", "demo_low_lr/baseline", "demo/random_frozen",
                           "demo/random_frozen_matched", "my_mlp_run/mlp", "other_model/mlp"}
    assert groups["demo/random_frozen"].baseline is groups["demo/baseline"]  # same preset
    assert groups["demo/random_frozen_matched"].baseline is groups["demo/baseline"]
    assert groups["my_mlp_run/mlp"].baseline is groups["demo/baseline"]  # other name, same model and recipe (lr)
    assert groups["other_model/mlp"].baseline is None  # no baseline of that model
    assert report.delta(groups["demo/random_frozen_matched"], "test_acc1").mean == pytest.approx(4.0)
    assert compare.fmt_paired(report.delta(groups["my_mlp_run/mlp"], "test_acc1"), 2) == "+5.00 (n=1)"


def test_projection_inits_are_groups_of_their_own(tmp_path):
    """``llm_proj_init: orthogonal`` runs form their own group (same variant otherwise) with the shared baseline."""
    _acc_run(tmp_path / "a", 0, 70.0, variant="none", llm_proj_init="orthogonal")  # no projections: still the baseline
    _acc_run(tmp_path / "b", 0, 72.0, variant="mlp", llm_proj_init="trunc_normal")
    _acc_run(tmp_path / "c", 0, 73.0, variant="mlp", llm_proj_init="orthogonal")
    _acc_run(tmp_path / "d", 0, 74.0, variant="random_frozen", llm_random_init="matched", llm_proj_init="orthogonal")
    report = compare.build_report([tmp_path])
    groups = {g.variant: g for g in report.groups}
    assert set(groups) == {"baseline", "mlp", "mlp_orthogonal_proj", "random_frozen_matched_orthogonal_proj"}
    assert all(g.baseline is groups["baseline"] for name, g in groups.items() if name != "baseline")
    assert report.delta(groups["mlp_orthogonal_proj"], "test_acc1").mean == pytest.approx(3.0)
