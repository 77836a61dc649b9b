"""tools/ reaches tasks only through common.task: no module of tools/ imports a task package (AST scan, lazy imports
inside functions included). tools/demo.py, compare*.py and paper.py are left to their own issue (#17)."""

import ast
from pathlib import Path

import pytest

from common.task import TASK_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_YET = {"demo.py", "compare.py", "compare_plots.py", "paper.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


TOOLS = sorted(p for p in (REPO_ROOT / "tools").rglob("*.py") if p.name not in NOT_YET)


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_tools_import_no_task(path):
    tasks = [m for m in imported_modules(path) if m.split(".")[0] in TASK_NAMES]
    assert not tasks, f"{path.relative_to(REPO_ROOT)} imports {', '.join(sorted(tasks))}; use common.task"


def test_the_scan_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from image_cls.models import build_model\n    import point_cloud.task\n")
    assert imported_modules(module) == {"image_cls.models", "point_cloud.task"}


def test_common_analysis_imports_no_tools():
    assert not [m for m in imported_modules(REPO_ROOT / "common" / "analysis.py") if m.startswith("tools")]
