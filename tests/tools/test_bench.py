"""tools.bench: each subcommand has its own --help; a smoke run of ``step`` (tiny shapes) produces every requested
configuration with finite numbers on the model image_cls's builder makes, ``fp8`` reports FP8's error, the FLOP
counts are right, bad input is refused in one line, and the loader benchmark's writers produce checkpoints the
real readers load. The torch.compile configurations are left out here (each compiles for ~25 s on a CPU); the
full CPU run recorded in tools/BENCHMARKS.md exercises them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from common.frozen_lm import FrozenLM, LMConfig, read_lm_config
from common.task import get_task
from tools import bench, bench_loader
from tools.bench_flops import llm_block_flops, vit_flops

EAGER = ["vit", "reference", "ours_fp32w", "ours", "ours_ckpt", "ours_fp8"]


def test_smoke_run_reports_every_configuration(tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:  # one thread: tiny ops on a shared 2-core machine run ~50x slower with two OpenMP threads
        rc = bench.main(["step", "--smoke", "--device", "cpu", "--threads", "1", "--configs", ",".join(EAGER),
                         "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    data = json.loads(out.read_text())
    assert list(data["configs"]) == EAGER
    for name, res in data["configs"].items():
        for phase in ("train", "infer"):
            m = res[phase]
            assert len(m["steps_ms"]) == 2, name
            for key in ("step_ms", "img_per_s", "tflops", "pct_of_gemm_peak", "peak_mem_mib", "flops"):
                assert math.isfinite(m[key]) and m[key] >= 0, (name, phase, key)
            assert m["step_ms"] > 0 and m["flops"] > 0
        assert math.isfinite(res["train"]["last_loss"]) and math.isfinite(res["speedup_vs_reference"]["train"])
    configs = data["configs"]
    assert configs["reference"]["speedup_vs_reference"] == {"train": 1.0, "infer": 1.0}
    train_flops = {name: configs[name]["train"]["flops"] for name in ("ours", "reference", "vit")}
    assert train_flops["ours"] == train_flops["reference"] > train_flops["vit"]
    assert configs["ours_fp8"]["fp8_backend"] == "emulated"
    printed = capsys.readouterr().out
    assert all(name in printed for name in EAGER) and "x ref" in printed and "frozen block GEMMs" not in printed


def test_fp8_report_on_its_own(tmp_path, capsys):
    out = tmp_path / "fp8.json"
    assert bench.main(["fp8", "--smoke", "--device", "cpu", "--threads", "1", "--json", str(out)]) == 0
    gemms = json.loads(out.read_text())["block_gemms"]
    assert set(gemms["gemms"]) == {"qkv", "out", "gate_up", "down"}
    for row in gemms["gemms"].values():
        assert 0.02 < row["fp8_rel_err_out"] < 0.06 and 0.03 < row["fp8_rel_err_grad_in"] < 0.09
    assert set(gemms["block"]["vs_float32"]) == {"bfloat16", "fp8_bfloat16", "fp8_float32"}
    assert "frozen block GEMMs" in capsys.readouterr().out


def test_help_lists_every_subcommand_and_each_has_its_own(capsys):
    def help_of(*argv):
        with pytest.raises(SystemExit) as exc:
            bench.main([*argv, "--help"])
        assert exc.value.code == 0
        return capsys.readouterr().out

    main = help_of()
    for name in bench.subcommands():
        assert name in main.split("positional arguments:")[1]
    assert "--configs" in help_of("step") and "--configs" not in help_of("fp8")
    assert "--n-layers" in help_of("loader") and "--pipelines" in help_of("input")


def test_the_model_is_the_task_builders(tmp_path):
    """The timed model is image_cls's (no copy of the graft): same class, same state-dict keys; the synthetic
    block's config round-trips through the real reader."""
    args = bench.resolve_args(bench.make_parser("step").parse_args(["--smoke", "--device", "cpu"]),
                              bench.make_parser("step"))
    cfg = bench.llm_config(args)
    path = bench.write_llm_config(cfg, tmp_path / "llm")
    assert read_lm_config(path) == cfg
    model = bench.build_model(bench.VARIANTS["ours"], args, path, torch.device("cpu"))
    task = get_task("image_cls")
    expected = task.build_model(bench.namespace_from_config(task.build_parser(),
                                                            bench.model_config(bench.VARIANTS["ours"], args, path)))
    assert type(model) is type(expected) and model.state_dict().keys() == expected.state_dict().keys()
    assert model.llm.lm.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    reference = bench.build_model(bench.VARIANTS["reference"], args, path, torch.device("cpu"))
    assert type(reference.llm.lm).__name__ == "ReferenceLM"


@pytest.mark.parametrize("argv, message", [
    (["--tokens", "100"], "--tokens must be 1 + a square"),
    (["--configs", "ours,bogus"], "unknown config(s) bogus"),
    (["--llm-dim", "100"], "--llm-dim must be a positive multiple of 64"),
    (["--llm-config", "/no/such/ckpt"], "--llm-config:"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["step", "--device", "cpu", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_flop_counts_vit_small_and_llama_7b_block():
    vit = vit_flops(1, 196, 384, 12, 4.0, 16, 3, 1000)
    assert vit.forward == 9_197_764_608  # ViT-S/16: 4.6 GMACs, as timm / fvcore report
    llama_7b = LMConfig("llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, ffn_hidden=11008,
                        norm_eps=1e-6)
    block = llm_block_flops(1, 197, llama_7b)
    gemm_params = llama_7b.params_per_layer() - 2 * 4096  # all but the two norms
    assert block.frozen_gemm == 2 * 197 * gemm_params and block.attention == 4 * 197 * 197 * 4096
    assert block.train_step == 2 * block.frozen_gemm + 3 * block.attention  # frozen: no weight gradients
    assert 8.5 < block.forward / vit.forward < 9  # "the frozen block is ~9x the ViT's own compute"


def test_loader_writers_make_checkpoints_the_readers_load(tmp_path):
    params = {"dim": 64, "n_heads": 4, "multiple_of": 32, "norm_eps": 1e-6, "vocab_size": 40}
    state = bench_loader.meta_state(2, torch.float16, params)
    meta = bench_loader.write_meta(tmp_path / "meta", state, 2, params)
    hf = bench_loader.write_hf(tmp_path / "hf", state, 2, params, shard_bytes=20_000)
    assert len(json.loads((hf / "model.safetensors.index.json").read_text())["weight_map"]) == len(state)
    assert len(list(hf.glob("*.safetensors"))) > 1
    loaded = {fmt: FrozenLM.from_checkpoint(path, layers=[-1]) for fmt, path in (("meta", meta), ("hf", hf))}
    expected = state["layers.1.feed_forward.w2.weight"].float()
    for lm in loaded.values():
        assert torch.equal(lm.blocks[0].ffn.down.weight, expected)
    for method in ("ours", "whole"):
        for fmt, path in (("meta", meta), ("hf", hf)):
            row = bench_loader.child(method, fmt, path, "float32")
            assert row["peak_rss_mib"] >= row["rss_after_imports_mib"] > 0 and row["seconds"] > 0
            assert row["block_params"] >= bench_loader.ffn_hidden(params) * 64 * 3
