"""Fixtures for the engine tests: running the toy task (tests/engine/engine_toy_train.py) as a program."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TOY_MODULE = "tests.engine.engine_toy_train"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TORCHELASTIC"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture
def run_toy():
    """``run_toy(args, nproc=1, env=None)`` -> CompletedProcess of the toy task (nproc > 1: tools/dist_train.sh)."""

    def run(args: list[str], nproc: int = 1, env: dict[str, str] | None = None, timeout: float = 120):
        if nproc == 1:
            cmd = [sys.executable, "-m", TOY_MODULE, *args]
        else:
            cmd = ["bash", str(REPO_ROOT / "tools" / "dist_train.sh"), TOY_MODULE, *args]
            env = {"GPUS": str(nproc), "PYTHON": sys.executable, **(env or {})}
        return subprocess.run(cmd, cwd=REPO_ROOT, env=_env(env), capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(autouse=True)
def _restore_process_state():
    """In-process toy runs set the thread count and add a console handler; undo both after each test."""
    threads = torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    torch.set_num_threads(threads)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
