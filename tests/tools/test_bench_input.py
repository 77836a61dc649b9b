"""tools.bench input: one run measures model-only, input-only and end-to-end rates for each pipeline (smoke
shapes on the CPU); bad input is one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools import bench, bench_input

SMOKE = ["--device", "cpu", "--vit", "tiny", "--llm-dim", "64", "--input-size", "48", "--batch-size", "4",
         "--batches", "2", "--warmup", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench_input")
    rng = np.random.default_rng(0)
    for c in range(2):
        folder = root / "train" / f"n0000000{c}"
        folder.mkdir(parents=True)
        (root / "val" / f"n0000000{c}").mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)
        Image.fromarray(pixels).save(root / "val" / f"n0000000{c}" / "0.JPEG")
    return root


@pytest.mark.parametrize("pipelines", ["cpu,gpu", "cpu,gpu,dali"])
def test_one_run_reports_every_rate(jpeg_folder: Path, tmp_path: Path, pipelines: str, capsys) -> None:
    if "dali" in pipelines and importlib.util.find_spec("nvidia.dali") is None:
        pytest.skip("the dali extra is not installed")
    out = tmp_path / "input.json"
    threads = torch.get_num_threads()
    try:
        rc = bench.main(["input", "--data-path", str(jpeg_folder), "--pipelines", pipelines, *SMOKE,
                         "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    report = json.loads(out.read_text())
    results, meta = report["results"], report["meta"]
    assert meta["images"] == 12 and meta["batch_size"] == 4
    model_only = results["model_only_img_s"]
    for name in pipelines.split(","):
        rates = results[name]
        assert all(math.isfinite(v) and v > 0 for v in rates.values()), rates
        assert rates["end_to_end_over_model_only"] == pytest.approx(rates["end_to_end_img_s"] / model_only)
    assert "end to end / model only" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "3"], "--batch-size must be even"),
    (["--input-size", "40"], "--input-size must be a multiple of 16"),
    (["--pipelines", "cpu,tpu"], "--pipelines"),
])
def test_bad_arguments_exit_2(jpeg_folder: Path, argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["input", "--data-path", str(jpeg_folder), "--device", "cpu", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_data_is_one_line_and_exit_4(tmp_path: Path, capsys) -> None:
    assert bench.main(["input", "--data-path", str(tmp_path / "none"), *SMOKE]) == 4  # DataPathError
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]


def test_synthetic_jpegs_are_imagenet_like_and_benchmarkable(tmp_path: Path) -> None:
    root = bench_input.write_synthetic_jpegs(tmp_path, 6, classes=3)
    train = sorted((root / "train").rglob("*.JPEG"))
    assert len(train) == 6 and len(list((root / "val").rglob("*.JPEG"))) == 6
    with Image.open(train[0]) as image:
        assert image.size == (500, 375) and image.format == "JPEG"
    assert all(50_000 < f.stat().st_size < 120_000 for f in train)  # ~80 KB, like ImageNet's
    out = tmp_path / "input.json"
    assert bench.main(["input", "--synthetic", "8", "--pipelines", "gpu", *SMOKE, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["meta"]["data"] == "8 synthetic 500x375 JPEGs"
