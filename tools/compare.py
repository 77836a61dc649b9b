"""Side-by-side comparison of training runs of any task, with the paper's numbers beside them.

    python -m tools.compare runs/ [more run dirs ...] [--out report/] [--delta-on final|best]

Every directory holding a ``config.yaml`` or ``log.txt`` (found recursively) is a run. Runs are grouped by
(task, preset, LLM variant — a random block's ``llm_random_init`` included); several seeds of a group give mean ±
sample std and n. Prints one markdown table per task: final and best value of each ``test_*`` metric, the paper's
number when the run's config matches a row of ``tools/paper_results.json``, the delta vs the baseline group beside
the paper's delta, trainable and frozen parameters, epochs and wall time. Runs still in progress and broken logs
are listed under "Problems".

A group's baseline is the ``llm_variant: none`` group of the same task (config ``task`` key when present) and the
same ``model``: the same preset first, else the one whose config differs in the fewest keys. The delta is paired:
the mean over the seeds both groups ran of (run − baseline run of that seed), with the sample std of those
differences and a 95 % t-interval (mean ± t(0.975, n−1) · std / √n); groups without common seeds get the
difference of their means, marked unpaired, without an interval.
``--out`` writes report.md, report.json and PNGs (metric/loss curves; delta-vs-baseline bars).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.frozen_lm.adapter import DEFAULT_PROJ_INIT, PROJ_INITS
from tools.paper import PAPER_RESULTS, PaperRow, PaperTable, load_paper_table
from tools.runlog import BASELINE_VARIANT, RunRecord, find_run_dirs, load_run

PROJ_SUFFIX = "_(" + "|".join(PROJ_INITS) + ")_proj$"  # the label of projections drawn other than the default
VARIANT_ORDER = ["baseline", "frozen", "mlp", "random_frozen", "random_frozen_torch", "random_frozen_matched",
                 "random_trainable", "random_trainable_torch", "random_trainable_matched", "finetune"]
# Config keys that say nothing about the recipe (where and which seed a run ran), ignored when matching baselines.
RUN_KEYS = {"seed", "output_dir", "config", "preset", "resume", "device", "dist_url", "world_size", "rank",
            "local_rank", "num_workers", "data_path", "print_freq", "eval_every", "save_every"}


@dataclass
class Stat:
    """Mean, sample standard deviation (None for n < 2) and count of a per-run quantity."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Stat | None:
        """Aggregate the non-missing values; None when there are none."""
        present = [v for v in values if v is not None]
        if not present:
            return None
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(statistics.fmean(present), std, len(present))

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def t_quantile(probability: float, df: int) -> float:
    """Student's t quantile (scipy.stats.t.ppf)."""
    from scipy.stats import t

    return float(t.ppf(probability, df))


@dataclass
class Paired(Stat):
    """A difference a − b: with ``paired``, mean and sample std of the per-seed differences over the n seeds both
    ran, and the half-width of their 95 % t-interval (None for n < 2); unpaired, the difference of the means."""

    half_width: float | None = None
    paired: bool = True
    seeds: list[int] = field(default_factory=list)

    @classmethod
    def between(cls, a: dict[int | None, float], b: dict[int | None, float]) -> Paired | None:
        """``a`` and ``b`` map seed -> value; None when either is empty."""
        if not a or not b:
            return None
        seeds = sorted(s for s in set(a) & set(b) if s is not None)
        if not seeds:
            return cls(statistics.fmean(a.values()) - statistics.fmean(b.values()), None, min(len(a), len(b)),
                       paired=False)
        diffs = [a[s] - b[s] for s in seeds]
        std = statistics.stdev(diffs) if len(diffs) > 1 else None
        half = t_quantile(0.975, len(diffs) - 1) * std / len(diffs) ** 0.5 if std is not None else None
        return cls(statistics.fmean(diffs), std, len(diffs), half, True, seeds)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % t-interval (lo, hi), None without one."""
        return None if self.half_width is None else (self.mean - self.half_width, self.mean + self.half_width)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "ci95": list(self.interval) if self.interval else None, "paired": self.paired,
                "seeds": self.seeds}


@dataclass
class Group:
    """Runs of one (task, preset, variant)."""

    task: str
    preset: str
    variant: str
    runs: list[RunRecord]
    metrics: list[str] = field(default_factory=list)
    final: dict[str, Stat | None] = field(default_factory=dict)
    best: dict[str, Stat | None] = field(default_factory=dict)
    trainable: Stat | None = None
    frozen: Stat | None = None
    wall_s: Stat | None = None
    paper: PaperRow | None = None
    paper_baseline: PaperRow | None = None
    baseline: Group | None = None

    @property
    def name(self) -> str:
        return f"{self.preset}/{self.variant}"

    def status(self) -> str:
        """Joined statuses of the runs, e.g. ``3× complete`` or ``2× complete, 1× partial 4/10``."""
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return ", ".join(f"{n}× {s}" if len(self.runs) > 1 else s for s, n in counts.items())

    def epochs(self) -> str:
        """``done/total`` (a range when the runs differ)."""
        done = sorted({r.epochs_done for r in self.runs})
        total = sorted({r.total_epochs for r in self.runs if r.total_epochs is not None})
        text = str(done[0]) if len(done) == 1 else f"{done[0]}-{done[-1]}"
        if total:
            text += "/" + ("/".join(str(t) for t in total))
        return text


@dataclass
class Report:
    """Everything compare prints and writes."""

    runs: list[RunRecord]
    groups: list[Group]
    paper: PaperTable
    delta_on: str = "final"

    def tasks(self) -> list[str]:
        return sorted({g.task for g in self.groups})

    def primary_metric(self, task: str) -> str | None:
        """Paper's headline metric for the task if the runs log it, else the first logged non-loss metric."""
        metrics = [m for g in self.groups if g.task == task for m in g.metrics]
        preferred = self.paper.primary_metric(task)
        if preferred in metrics:
            return preferred
        for key in ("test_acc1", "test_acc"):
            if key in metrics:
                return key
        return next((m for m in metrics if m != "test_loss"), None)

    def per_seed(self, group: Group, metric: str) -> dict[int | None, float]:
        """seed -> the metric's final (or best, per ``delta_on``) value of each run of ``group`` that logged it."""
        higher = self.paper.higher_is_better(group.task, metric)
        out = {}
        for run in group.runs:
            final, best = _final_and_best(run, metric, higher)
            value = final if self.delta_on == "final" else best
            if value is not None:
                out[run.seed] = value
        return out

    def difference(self, a: Group, b: Group, metric: str) -> Paired | None:
        """``a`` − ``b`` paired by seed (see :class:`Paired`)."""
        return Paired.between(self.per_seed(a, metric), self.per_seed(b, metric))

    def delta(self, group: Group, metric: str) -> Paired | None:
        """This group minus its baseline group, paired by seed."""
        return None if group.baseline is None else self.difference(group, group.baseline, metric)

    def paper_delta(self, group: Group, metric: str) -> float | None:
        """The paper's row value minus the paper's baseline row value."""
        if group.paper is None or group.paper_baseline is None:
            return None
        ours, base = group.paper.value(metric), group.paper_baseline.value(metric)
        return None if ours is None or base is None else ours - base


def _final_and_best(run: RunRecord, metric: str, higher_is_better: bool) -> tuple[float | None, float | None]:
    _, values = run.series(metric)
    if not values:
        return None, None
    return values[-1], (max(values) if higher_is_better else min(values))


def variant_label(run: RunRecord) -> str:
    """The run's variant, with ``_<init>`` for a random block drawn other than the default (``llm_random_init``) and
    ``_<init>_proj`` for projections drawn other than the default (``llm_proj_init``)."""
    config = run.config or {}
    label = run.variant
    init, proj = config.get("llm_random_init"), config.get("llm_proj_init")
    if run.variant.startswith("random") and isinstance(init, str) and init not in ("", "normal"):
        label += f"_{init}"
    if run.variant != BASELINE_VARIANT and isinstance(proj, str) and proj not in ("", DEFAULT_PROJ_INIT):
        label += f"_{proj}_proj"
    return label


def _is_baseline(group: Group) -> bool:
    return group.variant == BASELINE_VARIANT  # config llm_variant: none (tools.runlog.infer_variant)


def _recipe(run: RunRecord) -> dict[str, Any]:
    """The config without its llm_* keys and the keys that only say where a run ran (``RUN_KEYS``)."""
    return {k: v for k, v in (run.config or {}).items() if not k.startswith("llm_") and k not in RUN_KEYS}


def _pick_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The ``llm_variant: none`` group of the same task and ``model``: same preset first, else the one whose config
    (less llm_* and run-location keys) differs from this group's in the fewest keys; a run without a ``model`` key
    takes the task's baseline only when there is exactly one."""
    if _is_baseline(group):
        return None
    candidates = [g for g in groups if g.task == group.task and _is_baseline(g)]
    same_preset = [g for g in candidates if g.preset == group.preset]
    if same_preset:
        return same_preset[0]
    model = (group.runs[0].config or {}).get("model")
    if model is None:
        return candidates[0] if len(candidates) == 1 else None
    ours = _recipe(group.runs[0])
    same_model = [g for g in candidates if (g.runs[0].config or {}).get("model") == model]

    def distance(candidate: Group) -> int:
        theirs = _recipe(candidate.runs[0])
        return sum(ours.get(k) != theirs.get(k) for k in set(ours) | set(theirs))

    return min(same_model, key=distance, default=None)


def build_report(paths: list[Path], paper: PaperTable | None = None, delta_on: str = "final") -> Report:
    """Find and parse run directories under ``paths`` and aggregate them into groups."""
    paper = paper or load_paper_table()
    runs = [load_run(p) for p in find_run_dirs(paths)]
    by_key: dict[tuple[str, str, str], list[RunRecord]] = {}
    for run in runs:
        by_key.setdefault((run.task, run.preset, variant_label(run)), []).append(run)

    def order(key: tuple[str, str, str]) -> tuple:
        task, preset, variant = key
        rank = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
        return task, preset, rank, variant

    groups = []
    for key in sorted(by_key, key=order):
        task, preset, variant = key
        members = sorted(by_key[key], key=lambda r: (r.seed if r.seed is not None else -1, str(r.path)))
        group = Group(task=task, preset=preset, variant=variant, runs=members)
        for run in members:
            group.metrics += [m for m in run.metric_keys() if m not in group.metrics]
        for metric in group.metrics:
            higher = paper.higher_is_better(task, metric)
            pairs = [_final_and_best(run, metric, higher) for run in members]
            group.final[metric] = Stat.of([p[0] for p in pairs])
            group.best[metric] = Stat.of([p[1] for p in pairs])
        group.trainable = Stat.of([r.first_value("n_trainable") or r.first_value("n_parameters") for r in members])
        group.frozen = Stat.of([r.first_value("n_frozen") for r in members])
        group.wall_s = Stat.of([r.wall_time_s() for r in members])
        group.paper = paper.match(task, members[0].config, preset)
        group.paper_baseline = paper.row(group.paper.baseline) if group.paper else None
        groups.append(group)
    for group in groups:
        group.baseline = _pick_baseline(group, groups)
    return Report(runs=runs, groups=groups, paper=paper, delta_on=delta_on)


# ----------------------------------------------------------------------------------------------------------------
# Text output


def fmt_number(value: float | None, decimals: int | None = None) -> str:
    """Two decimals from 1 up, three below (minADE-like metres), unless ``decimals`` is given."""
    if value is None:
        return "–"
    if decimals is None:
        decimals = 2 if abs(value) >= 1 else 3
    return f"{value:.{decimals}f}"


def decimals_for(value: float | None) -> int:
    """Decimals used for a metric of this size (and its deltas): 2 from 1 up, 3 below."""
    return 2 if value is None or abs(value) >= 1 else 3


def fmt_stat(stat: Stat | None, signed: bool = False, decimals: int | None = None) -> str:
    """``mean ± std`` for several runs, ``mean`` for one; ``decimals`` defaults to ``decimals_for(mean)``."""
    if stat is None:
        return "–"
    decimals = decimals_for(stat.mean) if decimals is None else decimals
    mean = fmt_number(stat.mean, decimals)
    if signed and stat.mean >= 0:
        mean = "+" + mean
    if stat.std is None:
        return mean
    return f"{mean} ± {fmt_number(stat.std, decimals)}"


def fmt_paired(stat: Paired | None, decimals: int | None = None) -> str:
    """``+mean [lo, hi]`` (95 % t-interval) for a paired difference over several seeds, ``+mean (n=1)`` for one,
    ``+mean (unpaired)`` when the groups share no seed."""
    if stat is None:
        return "–"
    decimals = decimals_for(stat.mean) if decimals is None else decimals
    mean = f"{stat.mean:+.{decimals}f}"
    if not stat.paired:
        return f"{mean} (unpaired)"
    if stat.interval is None:
        return f"{mean} (n={stat.n})"
    lo, hi = stat.interval
    return f"{mean} [{lo:+.{decimals}f}, {hi:+.{decimals}f}]"


def fmt_params(stat: Stat | None) -> str:
    if stat is None:
        return "–"
    return f"{stat.mean / 1e6:.2f}M"


def fmt_duration(stat: Stat | None) -> str:
    if stat is None:
        return "–"
    seconds = stat.mean
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def short_metric(metric: str) -> str:
    return metric.removeprefix("test_")


def task_table(report: Report, task: str) -> str:
    """Markdown table of one task's groups."""
    groups = [g for g in report.groups if g.task == task]
    metrics = [m for m in dict.fromkeys(m for g in groups for m in g.metrics) if m != "test_loss"]
    primary = report.primary_metric(task)
    paper_metrics = [m for m in metrics if any(g.paper and g.paper.value(m) is not None for g in groups)]
    header = ["preset", "variant", "n", "status"]
    for metric in metrics:
        header += [f"{short_metric(metric)} final", f"{short_metric(metric)} best"]
    header += [f"paper {short_metric(m)}" for m in paper_metrics]
    if primary:
        header += [f"Δ {short_metric(primary)} ({report.delta_on}, paired, 95% CI)", "paper Δ"]
    header += ["trainable", "frozen", "epochs", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        cells = [g.preset, g.variant, str(len(g.runs)), g.status()]
        for metric in metrics:
            cells += [fmt_stat(g.final.get(metric)), fmt_stat(g.best.get(metric))]
        for metric in paper_metrics:
            value = g.paper.value(metric) if g.paper else None
            cells.append(fmt_number(value) if value is not None else "–")
        if primary:
            reference = g.final.get(primary)
            decimals = decimals_for(reference.mean if reference else (g.paper.value(primary) if g.paper else None))
            cells.append(fmt_paired(report.delta(g, primary), decimals=decimals))
            paper_delta = report.paper_delta(g, primary)
            cells.append("–" if paper_delta is None else f"{paper_delta:+.{decimals}f}")
        cells += [fmt_params(g.trainable), fmt_params(g.frozen), g.epochs(), fmt_duration(g.wall_s)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems(report: Report) -> list[str]:
    """One line per run that is incomplete or had parsing problems."""
    lines = []
    for run in report.runs:
        notes = list(run.issues)
        if run.status != "complete":
            notes.insert(0, run.status)
        if notes:
            lines.append(f"{run.path}: " + "; ".join(notes))
    return lines


def render_markdown(report: Report) -> str:
    """The whole report as markdown (tables per task, paper rows matched, problems)."""
    out = ["# Run comparison", ""]
    for task in report.tasks():
        out += [f"## {task}", "", task_table(report, task), ""]
        matched = [g for g in report.groups if g.task == task and g.paper]
        if matched:
            out.append("Paper rows: " + "; ".join(f"{g.name} = {g.paper.label} ({g.paper.table})" for g in matched))
            out.append("")
        baselines = [g for g in report.groups if g.task == task and g.baseline is not None]
        if baselines:
            out.append("Δ is against: " + "; ".join(f"{g.name} vs {g.baseline.name}" for g in baselines))
            out.append("")
    found = problems(report)
    if found:
        out += ["## Incomplete runs and problems", ""] + [f"- {line}" for line in found] + [""]
    return "\n".join(out)


def report_json(report: Report) -> dict[str, Any]:
    """Machine-readable report."""

    def stats(d: dict[str, Stat | None]) -> dict[str, Any]:
        return {k: (v.as_dict() if v else None) for k, v in d.items()}

    groups = []
    for g in report.groups:
        primary = report.primary_metric(g.task)
        delta = report.delta(g, primary) if primary else None
        groups.append(
            {
                "task": g.task,
                "preset": g.preset,
                "variant": g.variant,
                "n_runs": len(g.runs),
                "status": g.status(),
                "runs": [str(r.path) for r in g.runs],
                "final": stats(g.final),
                "best": stats(g.best),
                "n_trainable": g.trainable.as_dict() if g.trainable else None,
                "n_frozen": g.frozen.as_dict() if g.frozen else None,
                "wall_time_s": g.wall_s.as_dict() if g.wall_s else None,
                "epochs": g.epochs(),
                "baseline": g.baseline.name if g.baseline else None,
                "primary_metric": primary,
                "delta": delta.as_dict() if delta else None,
                "paper_row": g.paper.id if g.paper else None,
                "paper_metrics": g.paper.metrics if g.paper else None,
                "paper_delta": report.paper_delta(g, primary) if primary else None,
            }
        )
    runs = [
        {
            "path": str(r.path),
            "task": r.task,
            "preset": r.preset,
            "variant": r.variant,
            "seed": r.seed,
            "status": r.status,
            "epochs_done": r.epochs_done,
            "total_epochs": r.total_epochs,
            "issues": r.issues,
        }
        for r in report.runs
    ]
    return {"delta_on": report.delta_on, "groups": groups, "runs": runs, "problems": problems(report)}


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """report.md, report.json and the PNGs under ``out_dir``; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.md", out_dir / "report.json"]
    written[0].write_text(render_markdown(report), encoding="utf-8")
    written[1].write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
    from tools.compare_plots import plot_curves, plot_deltas

    for task in report.tasks():
        for plot, name in ((plot_curves, f"curves_{task}.png"), (plot_deltas, f"delta_{task}.png")):
            path = plot(report, task, out_dir / name)
            if path is not None:
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m tools.compare")
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or folders containing them")
    parser.add_argument("--out", type=Path, default=None, help="write report.md, report.json and PNGs here")
    parser.add_argument("--delta-on", choices=["final", "best"], default="final", help="metric value used for Δ")
    parser.add_argument("--paper-results", type=Path, default=PAPER_RESULTS, help="paper numbers (JSON)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.runs if not p.exists()]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        paper = load_paper_table(args.paper_results)
    except (OSError, ValueError) as error:
        print(f"error: cannot read paper results: {error}", file=sys.stderr)
        return 2
    report = build_report(args.runs, paper=paper, delta_on=args.delta_on)
    if not report.runs:
        print(f"error: no run directories (with config.yaml or log.txt) under: {', '.join(map(str, args.runs))}",
              file=sys.stderr)
        return 2
    print(render_markdown(report))
    if args.out is not None:
        for path in write_report(report, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
