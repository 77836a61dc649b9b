"""``python -m common.frozen_lm inspect hf://...`` as a user runs it (HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE in
the environment), and two processes started together (the ranks of one job) fetching each byte once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer, expected_safetensors_bytes, llama_layer_keys

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(hf_from_meta):
    with HubServer() as server:
        server.add_repo("org/llama-gqa", hf_from_meta.path)
        yield server


def _env(server: HubServer, cache: Path, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "TRANSFORMERS_OFFLINE")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_ENDPOINT": server.url,
            "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1" if offline else "0"}


def _inspect(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.frozen_lm", "inspect", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def test_plan_then_fetch_then_offline(served, hf_from_meta, tmp_path):
    total = expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2))
    dry = _inspect(_env(served, tmp_path), "hf://org/llama-gqa", "--layers", "-1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    headers = served.bytes_served  # config.json, index, shard headers: no tensor byte yet
    assert plan["bytes_to_fetch"] == plan["tensor_bytes"] == total - headers > headers

    run = _inspect(_env(served, tmp_path), "hf://org/llama-gqa", "--layers", "-1")
    assert run.returncode == 0, run.stderr
    assert f"plan for org/llama-gqa@{plan['commit']}: {plan['tensor_bytes']:,} tensor bytes" in run.stderr
    report = json.loads(run.stdout)
    assert report["path"] == f"hf://org/llama-gqa@{plan['commit']}" and report["layers"] == [2]
    assert report["hub"]["bytes_fetched"] == plan["tensor_bytes"] and served.bytes_served == total

    served.reset_counts()
    offline = _inspect(_env(served, tmp_path, offline=True), "hf://org/llama-gqa", "--layers", "-1")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["sha256"] == report["sha256"] and served.requests == []


def test_errors_are_one_line_with_exit_2(served, tmp_path):
    proc = _inspect(_env(served, tmp_path), "hf://org/missing", "--layers", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: hf://org/missing: repository not found")


def test_two_processes_started_together_fetch_each_range_once(served, hf_from_meta, tmp_path):
    env = _env(served, tmp_path)
    cmd = [sys.executable, "-m", "common.frozen_lm", "inspect", "hf://org/llama-gqa", "--layers", "-1"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    reports = [json.loads(out) for out, _ in outs]
    assert reports[0]["sha256"] == reports[1]["sha256"]
    json_files = sum((hf_from_meta.path / f).stat().st_size for f in ("config.json", "model.safetensors.index.json"))
    total = expected_safetensors_bytes(hf_from_meta.path, llama_layer_keys(2))
    assert sum(r["hub"]["bytes_fetched"] for r in reports) == total - json_files  # each range fetched by one of them
    ranged = [r[1:] for r in served.gets if r[2] is not None]
    assert len(ranged) == len(set(ranged))  # no range was requested twice
