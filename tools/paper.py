"""The paper's numbers (``tools/paper_results.json``) and matching a run's resolved config to a paper row."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

PAPER_RESULTS = Path(__file__).with_name("paper_results.json")
# Used when a metric is not described in the data file: these words mean "lower is better".
_LOWER_IS_BETTER_WORDS = ("loss", "ade", "fde", "mr", "err", "error")


@dataclass(frozen=True)
class PaperRow:
    """One row of one of the paper's tables."""

    id: str
    table: str
    task: str
    label: str
    match: dict[str, list[Any]]
    metrics: dict[str, float]
    baseline: str | None = None
    exclude: dict[str, list[Any]] = field(default_factory=dict)

    def value(self, metric: str) -> float | None:
        """The paper's value for a log metric key (case and '_' insensitive)."""
        wanted = metric_key(metric)
        for key, value in self.metrics.items():
            if metric_key(key) == wanted:
                return float(value)
        return None


@dataclass(frozen=True)
class PaperTable:
    """All rows plus per-task metric descriptions."""

    rows: list[PaperRow]
    tasks: dict[str, dict[str, Any]]

    def row(self, row_id: str | None) -> PaperRow | None:
        """Row by id."""
        return next((r for r in self.rows if r.id == row_id), None)

    def match(self, task: str, config: dict[str, Any] | None, preset: str) -> PaperRow | None:
        """The most specific row whose criteria the run satisfies (see the data file's ``matching`` note)."""
        if not config:
            return None
        values = dict(config)
        values["preset"] = preset
        best: PaperRow | None = None
        for row in self.rows:
            if row.task != task or not _satisfies(values, row.match):
                continue
            if any(_key_matches(values, key, alternatives) for key, alternatives in row.exclude.items()):
                continue
            if best is None or len(row.match) > len(best.match):
                best = row
        return best

    def primary_metric(self, task: str) -> str | None:
        """The metric the paper headlines for a task (e.g. ``test_acc1``)."""
        return self.tasks.get(task, {}).get("primary")

    def higher_is_better(self, task: str, metric: str) -> bool:
        """Direction of a metric: from the data file, else guessed from its name."""
        for key, spec in self.tasks.get(task, {}).get("metrics", {}).items():
            if metric_key(key) == metric_key(metric):
                return bool(spec.get("higher_is_better", True))
        words = re.split(r"[_\W]+", metric.lower())
        return not any(word in _LOWER_IS_BETTER_WORDS or word.startswith("min") for word in words)


def metric_key(name: str) -> str:
    """Normalised metric name for comparisons: lower case, no separators."""
    return re.sub(r"[^a-z0-9@]", "", name.lower())


def _key_matches(values: dict[str, Any], key: str, alternatives: list[Any]) -> bool:
    if key not in values:
        return False
    value = values[key]
    for alternative in alternatives:
        if isinstance(alternative, str):
            if fnmatchcase(str(value).lower(), alternative.lower()):
                return True
        elif _normalise(value) == _normalise(alternative):
            return True
    return False


def _normalise(value: Any) -> Any:
    """Tuples/lists compare equal; YAML may give either."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def _satisfies(values: dict[str, Any], criteria: dict[str, list[Any]]) -> bool:
    return all(_key_matches(values, key, alternatives) for key, alternatives in criteria.items())


def load_paper_table(path: Path = PAPER_RESULTS) -> PaperTable:
    """Read the paper-numbers data file; raises ValueError naming the problem if it is malformed."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for raw in data.get("rows", []):
        try:
            rows.append(
                PaperRow(
                    id=raw["id"],
                    table=raw["table"],
                    task=raw["task"],
                    label=raw["label"],
                    match={k: list(v) for k, v in raw["match"].items()},
                    metrics={k: float(v) for k, v in raw["metrics"].items()},
                    baseline=raw.get("baseline"),
                    exclude={k: list(v) for k, v in raw.get("exclude", {}).items()},
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: malformed row {raw.get('id', raw)!r}: {error!r}") from error
    ids = {row.id for row in rows}
    for row in rows:
        if row.baseline is not None and row.baseline not in ids:
            raise ValueError(f"{path}: row {row.id!r} names unknown baseline {row.baseline!r}")
    return PaperTable(rows=rows, tasks=data.get("tasks", {}))
