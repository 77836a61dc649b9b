"""Reading training run directories: the resolved ``config.yaml`` and the ``log.txt`` JSON lines.

A run directory is what a task's ``train`` entry point writes (see ``common.engine``): ``config.yaml``
(resolved arguments, underscore keys, with the ``task`` that wrote it) and ``log.txt`` with one JSON object per
epoch in DeiT's convention (``epoch``, ``task``, ``train_lr``, ``train_loss``, ``test_*`` metrics,
``n_parameters``, ``n_trainable``, ``n_frozen``, ``epoch_time``). Broken pieces (a missing config, a truncated last
line, non-JSON lines) are recorded in ``RunRecord.issues`` instead of raising.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_NAME = "config.yaml"
LOG_NAME = "log.txt"
# llm_variant values of common.frozen_lm.LLMSpec; "none" is shown as "baseline".
BASELINE_VARIANT = "baseline"


@dataclass
class RunRecord:
    """One run directory, parsed leniently."""

    path: Path
    config: dict[str, Any] | None
    epochs: list[dict[str, Any]]  # one dict per epoch, de-duplicated by epoch number, in order
    issues: list[str] = field(default_factory=list)
    task: str = "unknown"
    preset: str = "unknown"
    variant: str = "unknown"
    seed: int | None = None
    total_epochs: int | None = None

    @property
    def epochs_done(self) -> int:
        """Number of logged epochs."""
        return len(self.epochs)

    @property
    def status(self) -> str:
        """``complete``, ``partial k/E`` (in progress or stopped), ``no epochs`` or ``k epochs`` (total unknown)."""
        if not self.epochs:
            return "no epochs"
        if self.total_epochs is None:
            return f"{self.epochs_done} epochs"
        if self.epochs_done >= self.total_epochs:
            return "complete"
        return f"partial {self.epochs_done}/{self.total_epochs}"

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epoch numbers, values) of a numeric log key, skipping epochs without it."""
        xs, ys = [], []
        for row in self.epochs:
            value = as_number(row.get(key))
            if value is not None:
                xs.append(int(row["epoch"]))
                ys.append(value)
        return xs, ys

    def first_value(self, key: str) -> float | None:
        """First numeric value of a key in the log (parameter counts are constant over a run)."""
        for row in self.epochs:
            value = as_number(row.get(key))
            if value is not None:
                return value
        return None

    def wall_time_s(self) -> float | None:
        """Sum of ``epoch_time`` over logged epochs (seconds), None when the log has no timings."""
        times = [parse_seconds(row.get("epoch_time")) for row in self.epochs]
        times = [t for t in times if t is not None]
        return sum(times) if times else None

    def metric_keys(self) -> list[str]:
        """The ``test_*`` keys with numeric values, in first-seen order (``test_loss`` included)."""
        keys: list[str] = []
        for row in self.epochs:
            for key, value in row.items():
                if key.startswith("test_") and as_number(value) is not None and key not in keys:
                    keys.append(key)
        return keys


def as_number(value: Any) -> float | None:
    """A finite float from an int/float log value, else None (bools, strings, NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_seconds(value: Any) -> float | None:
    """Seconds from a number or an ``H:MM:SS`` string (DeiT prints ``str(timedelta)``)."""
    number = as_number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        match = re.fullmatch(r"(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", value.strip())
        if match:
            days, hours, minutes, seconds = match.groups()
            return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def is_run_dir(path: Path) -> bool:
    """A directory holding a config.yaml or a log.txt."""
    return path.is_dir() and ((path / CONFIG_NAME).is_file() or (path / LOG_NAME).is_file())


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories given directly or found (recursively) under the given folders, sorted, unique."""
    found: list[Path] = []
    for root in paths:
        if is_run_dir(root):
            found.append(root)
            continue
        if root.is_dir():
            for marker in sorted(root.rglob("*")):
                if marker.name in (CONFIG_NAME, LOG_NAME) and marker.is_file():
                    found.append(marker.parent)
    unique = sorted({p.resolve(): p for p in found}.values(), key=lambda p: str(p))
    return unique


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Epoch rows of a log.txt and the problems met (invalid/truncated lines, rows without ``epoch``).

    A re-logged epoch (a run resumed from an earlier checkpoint) replaces the earlier row.
    """
    issues: list[str] = []
    by_epoch: dict[int, dict[str, Any]] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    bad_lines: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                issues.append(f"log.txt line {number}: truncated last line skipped")
            else:
                bad_lines.append(number)
            continue
        if not isinstance(row, dict) or as_number(row.get("epoch")) is None:
            bad_lines.append(number)
            continue
        by_epoch[int(row["epoch"])] = row
    if bad_lines:
        shown = ", ".join(str(n) for n in bad_lines[:5]) + (" ..." if len(bad_lines) > 5 else "")
        issues.append(f"log.txt: {len(bad_lines)} line(s) without a JSON epoch record skipped (line {shown})")
    return [by_epoch[e] for e in sorted(by_epoch)], issues


def infer_task(config: dict[str, Any] | None, run_dir: Path, epochs: list[dict[str, Any]] | None = None) -> str:
    """Task name: the config's ``task`` key (the engine writes it, ``Task.name``), else the ``task`` of the log's
    rows; only for runs older than that, the folder of the preset path (``image_cls/configs/x.yaml``) when it is
    a task ``common.task`` knows. ``unknown`` otherwise."""
    from common.task import TASK_NAMES

    if config and isinstance(config.get("task"), str) and config["task"]:
        return config["task"]
    for row in epochs or []:
        if isinstance(row.get("task"), str) and row["task"]:
            return row["task"]
    preset = config.get("config") if config else None
    if isinstance(preset, str) and "/configs/" in preset.replace("\\", "/"):
        folder = Path(preset.replace("\\", "/").split("/configs/")[0]).name
        if folder in TASK_NAMES:
            return folder
    return "unknown"


def infer_preset(config: dict[str, Any] | None) -> str:
    """Preset name: stem of the config's ``config`` (the YAML preset it was started from)."""
    if config and isinstance(config.get("config"), str) and config["config"]:
        return Path(config["config"]).stem
    if config and isinstance(config.get("preset"), str):
        return config["preset"]
    return "unknown"


def infer_variant(config: dict[str, Any] | None) -> str:
    """LLM variant of the run: ``baseline`` for ``llm_variant: none``, else the llm_variant value."""
    if not config or "llm_variant" not in config:
        return "unknown"
    variant = str(config["llm_variant"] or "none")
    return BASELINE_VARIANT if variant == "none" else variant


def load_run(path: Path) -> RunRecord:
    """Parse one run directory; never raises on broken content (problems go to ``issues``)."""
    issues: list[str] = []
    config: dict[str, Any] | None = None
    config_path = path / CONFIG_NAME
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                config = loaded
            else:
                issues.append("config.yaml: not a mapping")
        except yaml.YAMLError as error:
            issues.append(f"config.yaml: unreadable YAML ({str(error).splitlines()[0]})")
    else:
        issues.append("config.yaml missing")
    epochs: list[dict[str, Any]] = []
    log_path = path / LOG_NAME
    if log_path.is_file():
        epochs, log_issues = read_log(log_path)
        issues.extend(log_issues)
    else:
        issues.append("log.txt missing")
    total = as_number(config.get("epochs")) if config else None
    seed = as_number(config.get("seed")) if config else None
    return RunRecord(
        path=path,
        config=config,
        epochs=epochs,
        issues=issues,
        task=infer_task(config, path, epochs),
        preset=infer_preset(config),
        variant=infer_variant(config),
        seed=int(seed) if seed is not None else None,
        total_epochs=int(total) if total is not None else None,
    )
