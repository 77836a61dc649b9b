"""tools/dist_train.sh and tools/slurm_train.sh: without arguments they print their usage (exit 2), and every
preset their usage or header names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("dist_train.sh", "slurm_train.sh", "train_paper_rows.sh", "preset_lib.sh")
PRESET = re.compile(r"[\w./-]+/configs/[\w./-]+\.yaml")


@pytest.mark.parametrize("name", ["dist_train.sh", "slurm_train.sh"])
def test_usage_names_an_existing_preset(name):
    result = subprocess.run(["bash", str(REPO_ROOT / "tools" / name)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")
    named = PRESET.findall(result.stderr)
    assert named, f"{name}: the usage shows no example preset"
    for preset in named:
        assert (REPO_ROOT / preset).is_file(), f"{name} usage names {preset}, which does not exist"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_preset_in_the_script_exists(name):
    text = (REPO_ROOT / "tools" / name).read_text(encoding="utf-8")
    for preset in PRESET.findall(text):
        if "$" not in preset and "NAME" not in preset:  # skip templates such as TASK/configs/NAME.yaml
            assert (REPO_ROOT / preset).is_file(), f"tools/{name} names {preset}, which does not exist"
