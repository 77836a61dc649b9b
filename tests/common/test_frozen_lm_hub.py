"""``--llm-path hf://org/name``: a loopback Hub-like server (hub_server.py) serves checkpoints written by
``save_pretrained`` and ``gguf.GGUFWriter``; the block read through range requests must equal the local one, and
the server must have sent the JSON files, the headers and the requested tensors' bytes, nothing else."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from hub_server import HubServer, expected_safetensors_bytes, llama_layer_keys

from common.frozen_lm import CheckpointError, FrozenLM, read_lm_config
from common.frozen_lm.formats import hub as hub_mod
from common.frozen_lm.formats import hub_cache, inspect_checkpoint, is_hub_path, plan_checkpoint


@pytest.fixture
def hub(tmp_path, monkeypatch, hf_from_meta, hf_llama_mha, gguf_from_meta, hf_opt350m):
    """The server with five repos; HF_ENDPOINT points at it, the HF cache is empty, offline mode is off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_cache, "RETRY_WAIT_S", 0.0)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer() as server:
        server.add_repo("org/llama-gqa", hf_from_meta.path)  # sharded safetensors + index
        server.add_repo("org/llama-mha", hf_llama_mha.path)  # one model.safetensors
        server.add_repo("org/tiny-gguf", gguf_from_meta.parent)
        server.add_repo("org/opt-bin", hf_opt350m.path)  # pickled pytorch_model.bin only
        server.add_repo("org/gated", hf_llama_mha.path, gated=True)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _same_block(a: FrozenLM, b: FrozenLM) -> None:
    sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert a.fingerprint["sha256"] == b.fingerprint["sha256"]
    assert a.fingerprint["format"] == b.fingerprint["format"]


def test_hub_ids_are_told_from_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "llama").mkdir(parents=True)
    assert is_hub_path("hf://org/name") and is_hub_path("hf://org/name@v1/x.gguf")
    assert is_hub_path("org/name") and is_hub_path("org/name@abc")
    assert is_hub_path("https://huggingface.co/org/name")
    assert not is_hub_path("runs/llama")  # exists locally: a local path wins
    assert not is_hub_path("/abs/llama") and not is_hub_path("llama.gguf") and not is_hub_path(tmp_path / "a/b")
    with pytest.raises(CheckpointError, match="not an LLM checkpoint"):
        plan_checkpoint("hf://datasets/org/name")


def test_sharded_block_equals_local_and_only_its_bytes_are_fetched(hub, hf_from_meta):
    lm = FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1])
    _same_block(lm, FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1]))
    assert hub.bytes_served == expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2))
    ranged = [r for r in hub.gets if r[2] is not None]
    assert len(hub.gets) - len(ranged) == 2  # config.json and the index, whole
    assert lm.fingerprint["path"].startswith("hf://org/llama-gqa@")

    hub.reset_counts()  # a second run reads the cache: no body is sent, only the HEAD of config.json
    _same_block(FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1]), lm)
    assert hub.bytes_served == 0 and hub.gets == []


def test_offline_run_reads_only_the_cache(hub, hf_from_meta, monkeypatch):
    lm = FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1])
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.reset_counts()
    _same_block(FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1]), lm)
    assert hub.requests == []
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set"):  # layer 0 was never fetched
        FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[0])
    assert hub.requests == []


def test_single_file_safetensors_with_pretrained_final_norm(hub, hf_llama_mha):
    keys = [k for i in (0, 1) for k in llama_layer_keys(i)] + ["model.norm.weight"]
    lm = FrozenLM.from_checkpoint("hf://org/llama-mha@main", layers=[0, 1], final_norm="pretrained")
    _same_block(lm, FrozenLM.from_checkpoint(hf_llama_mha.path, layers=[0, 1], final_norm="pretrained"))
    assert hub.bytes_served == expected_safetensors_bytes(hf_llama_mha.path, keys)
    assert read_lm_config("hf://org/llama-mha") == read_lm_config(hf_llama_mha.path)


def test_gguf_header_in_growing_prefixes_then_the_tensors(hub, gguf_from_meta, monkeypatch):
    import gguf

    monkeypatch.setattr(hub_mod, "GGUF_HEADER_BYTES", 256)
    lm = FrozenLM.from_checkpoint("hf://org/tiny-gguf/" + gguf_from_meta.name, layers=[1])
    _same_block(lm, FrozenLM.from_checkpoint(gguf_from_meta, layers=[1]))
    local = gguf.GGUFReader(gguf_from_meta)
    size = gguf_from_meta.stat().st_size
    prefix = 256
    while prefix < local.data_offset:
        prefix *= 2
    sent = np.zeros(size, dtype=bool)  # the bytes the server should have sent: the prefix and layer 1's tensors
    sent[:min(prefix, size)] = True
    for tensor in local.tensors:
        if tensor.name.startswith("blk.1."):
            sent[tensor.data_offset:tensor.data_offset + tensor.n_bytes] = True
    assert hub.bytes_served == int(sent.sum()) < size // 2


def test_real_smollm2_gguf_from_the_hub(hub, smollm2_gguf):
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", smollm2_gguf.parent)
    lm = FrozenLM.from_checkpoint(f"hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/{smollm2_gguf.name}", [-1])
    _same_block(lm, FrozenLM.from_checkpoint(smollm2_gguf, [-1]))
    assert hub.bytes_served < smollm2_gguf.stat().st_size // 10


def test_a_server_that_ignores_range_is_refused(hub, hf_from_meta):
    hub.ignore_range = True
    with pytest.raises(CheckpointError, match="does not support range requests") as info:
        FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1])
    assert "\n" not in str(info.value)
    hub.ignore_range = False  # nothing bad was recorded: a good server then gives the right block
    _same_block(FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1]),
                FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1]))


def test_a_dropped_connection_resumes_where_it_broke(hub, hf_from_meta):
    hub.drop_after, hub.drops_left = 1000, 3
    lm = FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1])
    _same_block(lm, FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1]))
    assert hub.drops_left == 0
    assert hub.bytes_served == expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2))  # no byte twice


def test_a_connection_that_keeps_dropping_fails_cleanly_and_the_next_run_resumes(hub, hf_from_meta):
    hub.drop_after, hub.drops_left = 1000, 10_000
    with pytest.raises(CheckpointError, match="network error .* run again to resume") as info:
        FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1])
    assert "\n" not in str(info.value)
    hub.drops_left = 0
    _same_block(FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1]),
                FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1]))
    assert hub.bytes_served == expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2))


def test_a_gated_repo_opens_with_hf_token(hub, hf_llama_mha, monkeypatch):
    from hub_server import TOKEN

    with pytest.raises(CheckpointError, match="gated repository"):
        FrozenLM.from_checkpoint("hf://org/gated", layers=[-1])
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _same_block(FrozenLM.from_checkpoint("hf://org/gated", layers=[-1]),
                FrozenLM.from_checkpoint(hf_llama_mha.path, layers=[-1]))


def test_a_busy_server_is_tried_again_then_given_up_on(hub, hf_from_meta):
    hub.fails_left = 2
    _same_block(FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[-1]),
                FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1]))
    assert hub.fails_left == 0
    hub.fails_left = 10_000
    with pytest.raises(CheckpointError, match=r"bytes 0-8 after 4 tries \(HTTP 503\)"):
        FrozenLM.from_checkpoint("hf://org/llama-gqa", layers=[0])


@pytest.mark.parametrize("path, message", [
    ("hf://org/missing", "repository not found"),
    ("hf://org/gated", "gated repository"),
    ("hf://org/llama-gqa@no-such-branch", "revision 'no-such-branch' does not exist"),
    ("hf://org/opt-bin", r"only pickled weights \(pytorch_model.bin\)"),
    ("hf://org/tiny-gguf/missing.gguf", "file not found"),
    ("hf://org/llama-gqa/sub", "no config.json there"),
    ("hf://org/meta", r"a Meta checkpoint \(params.json"),
])
def test_hub_problems_are_one_line(hub, meta_dir, path, message):
    hub.add_repo("org/meta", meta_dir)
    with pytest.raises(CheckpointError, match=message) as info:
        FrozenLM.from_checkpoint(path, layers=[-1])
    assert "\n" not in str(info.value) and path.split("@")[0] in str(info.value)


def test_inspect_reports_the_plan_before_fetching(hub, hf_from_meta):
    plans = []
    plan = plan_checkpoint("hf://org/llama-gqa", [-1])
    headers_only = hub.bytes_served
    tensor_bytes = expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2)) - headers_only
    assert plan["tensor_bytes"] == plan["bytes_to_fetch"] == tensor_bytes
    assert plan["weights_bytes"] == json.loads((hf_from_meta.path / "model.safetensors.index.json").read_text())[
        "metadata"]["total_size"]
    report = inspect_checkpoint("hf://org/llama-gqa", [-1], on_plan=plans.append)
    assert plans == [plan] and hub.bytes_served == headers_only + tensor_bytes
    assert report["hub"]["bytes_fetched"] == tensor_bytes and report["bytes_read"] == tensor_bytes
    assert report["sha256"] == inspect_checkpoint(hf_from_meta.path, [-1])["sha256"]


def test_a_task_accepts_a_hub_llm_path():
    import argparse

    from common.engine.errors import LLMCheckpointError
    from common.frozen_lm import add_llm_args
    from common.task import Task

    parser = argparse.ArgumentParser()
    add_llm_args(parser)
    Task.check_args(None, parser.parse_args(["--llm-variant", "frozen", "--llm-path", "hf://org/name@main"]))
    with pytest.raises(LLMCheckpointError, match="no such file or directory"):
        Task.check_args(None, parser.parse_args(["--llm-variant", "frozen", "--llm-path", "./org/name"]))


def test_a_tensor_read_on_its_own_is_fetched_first_and_errors_name_the_hub_file(hub, hf_from_meta):
    from safetensors import safe_open

    from common.frozen_lm import open_checkpoint

    key = "model.layers.0.mlp.up_proj.weight"
    shard = json.loads((hf_from_meta.path / "model.safetensors.index.json").read_text())["weight_map"][key]
    with open_checkpoint("hf://org/llama-gqa") as reader:
        assert reader.file_of(key) == f"hf://org/llama-gqa@{reader.commit}/{shard}"
        with safe_open(str(hf_from_meta.path / shard), framework="pt") as local:
            expected = local.get_tensor(key)
        assert torch.equal(reader.read(key), expected)
        assert reader.bytes_fetched > expected.nbytes  # its shard's header, then the tensor
        hub.reset_counts()
        assert len(reader.read_layer(1)) == 9  # one layer at once: per shard, its (adjacent) tensors in one request
        weight_map = json.loads((hf_from_meta.path / "model.safetensors.index.json").read_text())["weight_map"]
        shards = {weight_map[k] for k in llama_layer_keys(1)}
        headers = [r for r in hub.gets if r[2] == "bytes=0-7"]
        assert len(hub.gets) == 2 * len(headers) + len(shards)


def test_adapters_from_a_hub_path_and_the_engine_exit_code(hub):
    from common.engine.errors import LLMCheckpointError
    from common.engine.loop import create_model
    from common.frozen_lm import LLMAdapter, LLMSpec

    adapter = LLMAdapter.from_spec(32, LLMSpec(variant="frozen", path="hf://org/llama-gqa"))
    assert adapter(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    hub.reset_counts()  # the MLP control needs only the dims: config.json, no tensor byte
    LLMAdapter.from_spec(32, LLMSpec(variant="mlp", path="hf://org/llama-mha"))
    assert [r[1].rsplit("/", 1)[-1] for r in hub.gets] == ["config.json"]
    spec = LLMSpec(variant="frozen", path="hf://org/gated")
    with pytest.raises(LLMCheckpointError, match="^--llm-path: hf://org/gated: gated repository") as info:
        create_model(lambda args: LLMAdapter.from_spec(32, spec), None)
    assert info.value.exit_code == 5


def test_a_corrupt_or_foreign_gguf_costs_a_bounded_prefix(hub, gguf_from_meta, tmp_path, monkeypatch):
    import gguf

    monkeypatch.setattr(hub_mod, "GGUF_HEADER_BYTES", 256)
    monkeypatch.setattr(hub_mod, "MAX_GGUF_HEADER", 1024)
    assert gguf.GGUFReader(gguf_from_meta).data_offset > 1024
    data = gguf_from_meta.read_bytes()
    (tmp_path / "bad").mkdir()
    n_keys = struct.unpack("<Q", data[16:24])[0]
    (tmp_path / "bad" / "shifted.gguf").write_bytes(data[:16] + struct.pack("<Q", n_keys + 3) + data[24:])
    (tmp_path / "bad" / "absurd.gguf").write_bytes(data[:8] + struct.pack("<Q", 10**9) + data[16:])
    (tmp_path / "bad" / "not.gguf").write_bytes(b"PK\x03\x04" + bytes(4096))
    hub.add_repo("org/bad", tmp_path / "bad")
    with pytest.raises(CheckpointError, match="no complete GGUF header in the first 1,024 bytes"):
        FrozenLM.from_checkpoint("hf://org/bad/shifted.gguf")
    assert hub.bytes_served == 1024
    hub.reset_counts()
    with pytest.raises(CheckpointError, match="implausible GGUF header"):
        FrozenLM.from_checkpoint("hf://org/bad/absurd.gguf")
    assert hub.bytes_served == 256
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        FrozenLM.from_checkpoint("hf://org/bad/not.gguf")
