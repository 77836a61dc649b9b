"""distributed: launcher environments (torchrun, SLURM), samplers, a real 2-process SLURM-style rendezvous."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.engine import distributed
from common.engine.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node07", ["node07"]),
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("gpu-a[8-10],gpu-b3", ["gpu-a8", "gpu-a9", "gpu-a10", "gpu-b3"]),
    ("r[1-2]-n[01-02]", ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]),
    ("host1,host2", ["host1", "host2"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert distributed.expand_nodelist(nodelist) == hosts


def test_torchrun_variables_take_precedence_over_slurm():
    env = distributed.launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                                  "MASTER_PORT": "1234", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert env == distributed.LaunchEnv("torchrun", 3, 4, 1, "h", 1234)


def test_slurm_variables_give_rank_world_and_master():
    env = distributed.launch_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                                  "SLURM_JOB_NODELIST": "node[01-03,07]", "SLURM_JOB_ID": "123456"})
    assert env == distributed.LaunchEnv("slurm", 5, 8, 1, "node01", 20000 + 123456 % 40000)
    env = distributed.launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
                                  "SLURM_JOB_NODELIST": "a,b", "SLURM_JOB_ID": "9", "MASTER_PORT": "29999"})
    assert (env.master_addr, env.master_port) == ("a", 29999)
    with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST"):
        distributed.launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})


def test_no_launcher_means_one_process():
    assert distributed.launch_env({}) == distributed.LaunchEnv("single", 0, 1, 0)


def test_samplers_split_like_one_process_with_the_global_batch():
    data = list(range(10))
    one = list(distributed.DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=3))
    ranks = [list(distributed.DistributedSampler(data, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in (0, 1)]
    # global batch 4 = first 4 of the 1-process order = first 2 of each rank
    assert sorted(ranks[0][:2] + ranks[1][:2]) == sorted(one[:4])
    shards = [list(distributed.ShardSampler(range(10), num_replicas=3, rank=r)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # contiguous, unpadded: gathering restores order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_tasks_started_like_srun_join_one_gloo_group():
    script = (
        "import torch\n"
        "from common.engine import distributed as d\n"
        "info = d.init_distributed('cpu')\n"
        "x = d.all_gather_cat(torch.arange(info.rank + 1))\n"
        "print(info.rank, info.world_size, d.all_reduce_mean(torch.tensor(float(info.rank))).item(), x.tolist())\n"
        "d.cleanup()\n"
    )
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
        env.update(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank), SLURM_JOB_ID="77",
                   SLURM_JOB_NODELIST="localhost", MASTER_PORT=port, OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0].split(maxsplit=3) == ["0", "2", "0.5", "[0, 0, 1]\n"]
    assert outs[1][0].startswith("1 2 0.5 [0, 0, 1]")


def test_slurm_launcher_builds_the_srun_line(tmp_path):
    fake = tmp_path / "srun"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\necho "PYTHONPATH=$PYTHONPATH" >> "$SRUN_LOG"\n')
    fake.chmod(0o755)
    log = tmp_path / "srun.log"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SRUN_LOG": str(log), "GPUS": "16",
           "GPUS_PER_NODE": "8", "PARTITION": "gpu", "SRUN_ARGS": "--time=1:00:00 --account=x"}
    script = str(REPO_ROOT / "tools" / "slurm_train.sh")
    subprocess.run(["bash", script, "image_cls.train", "--epochs", "3"], env=env, check=True, cwd=tmp_path)
    lines = log.read_text().splitlines()
    for flag in ("--partition=gpu", "--ntasks=16", "--ntasks-per-node=8", "--gres=gpu:8", "--cpus-per-task=5",
                 "--kill-on-bad-exit=1", "--time=1:00:00", "--account=x"):
        assert flag in lines
    assert lines[lines.index("-m"):lines.index("-m") + 6] == ["-m", "image_cls.train", "--epochs", "3",
                                                              "--resume", "auto"]
    assert lines[-1].startswith(f"PYTHONPATH={REPO_ROOT}")
    subprocess.run(["bash", script, "image_cls.train", "--resume", "x.pth"], env=env, check=True, cwd=tmp_path)
    assert log.read_text().splitlines().count("--resume") == 1  # an explicit --resume is kept, not doubled


def test_all_reduce_helpers_are_identity_on_one_process():
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_mean(t), t) and torch.equal(distributed.all_gather_cat(t), t)
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}] and distributed.is_main_process()
