"""The shared recipe lives in common/ once: no task module carries its own copy (a scan of the task sources).

Each pattern is a piece of glue the tasks used to copy; it now has one home in common/ (named in the message).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.task import REPO_ROOT, available_tasks

COPIES = {  # regex -> where it lives instead
    r"\btorch\.load\(": "common.engine.state_dict.torch_load / read_state_dict (weights_only, allow-list)",
    r"\bSoftTargetCrossEntropy\b|\bLabelSmoothingCrossEntropy\b": "common.recipe.build_criterion",
    r"\bMixup\(": "common.recipe.build_mixup",
    r"def (build_criterion|build_mixup|scaled_lrs|mixup_active)\b": "common.recipe",
    r"\bresolve_total_batch_size\b|add_argument\(\"--total-batch-size\"": "the engine (--total-batch-size, loop.setup)",
    r"\btorch\.optim\.(AdamW|Adam|SGD)\(": "common.engine.optim.make_optimizer (--opt)",
    r"\bload_lm4ve_llama\b|\blm4ve_llama_matches\b|\bcheck_lm4ve_llama\b": "common.frozen_lm.lm4ve.import_lm4ve",
    r"\bdistributed\.init_distributed\(": "common.engine.runner.setup_evaluation / loop.setup",
    r'startswith\("module\."\)': "common.engine.state_dict.strip_prefixes",
}


def task_sources() -> list[Path]:
    return sorted(p for name in available_tasks() for p in (REPO_ROOT / name).rglob("*.py"))


@pytest.mark.parametrize("pattern", sorted(COPIES))
def test_no_task_carries_a_copy_of_the_shared_recipe(pattern):
    found = [f"{path.relative_to(REPO_ROOT)}:{n}" for path in task_sources()
             for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not found, f"{COPIES[pattern]} already does this: {', '.join(found)}"


def test_the_scan_sees_the_tasks():
    assert {p.parts[-2] for p in task_sources() if p.name == "task.py"} >= {"image_cls", "point_cloud",
                                                                             "action_recognition"}
