"""PNG plots of ``tools.compare``: metric/loss curves of every run, and Δ vs baseline bars beside the paper's Δ."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.compare import Report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(report: Report, task: str, path: Path) -> Path | None:
    """Primary metric (left) and train/test loss (right) per epoch, every run of the task on shared axes: one colour
    per group, one line style per seed; the legend names the groups (and the styles) once, below the axes."""
    metric = report.primary_metric(task)
    groups = [g for g in report.groups if g.task == task]
    if not any(r.epochs for g in groups for r in g.runs):
        return None
    plt = _pyplot()
    fig, (ax_metric, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5 + 0.25 * ((len(groups) + 1) // 2)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for index, group in enumerate(groups):
        color = colors[index % len(colors)]
        for run_index, run in enumerate(group.runs):
            style = styles[run_index % len(styles)]
            label = group.name if run_index == 0 else None
            if metric:
                xs, ys = run.series(metric)
                if xs:
                    ax_metric.plot(xs, ys, style, color=color, label=label, marker="." if len(xs) < 30 else None)
            xs, ys = run.series("train_loss")
            if xs:
                ax_loss.plot(xs, ys, style, color=color)
            xs, ys = run.series("test_loss")
            if xs:
                ax_loss.plot(xs, ys, style, color=color, alpha=0.45, marker=".")
    ax_metric.set(title=f"{task}: {metric or 'no metric'}", xlabel="epoch", ylabel=metric or "")
    ax_loss.set(title=f"{task}: loss (train: strong colour; test: pale, with markers)", xlabel="epoch",
                ylabel="loss")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_metric, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[i % len(colors)], label=g.name) for i, g in enumerate(groups)]
    n_runs = max(len(g.runs) for g in groups)
    handles += [Line2D([], [], color="black", linestyle=styles[i % len(styles)], label=f"run {i + 1} of a group "
                       "(seed order)") for i in range(min(n_runs, len(styles)))] if n_runs > 1 else []
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.045 * ((len(handles) + 2) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_deltas(report: Report, task: str, path: Path) -> Path | None:
    """Bars of Δ vs baseline (primary metric, paired over seeds; error bar = the 95 % t-interval) with the paper's Δ
    beside."""
    metric = report.primary_metric(task)
    if not metric:
        return None
    rows = []
    for group in report.groups:
        if group.task != task:
            continue
        delta = report.delta(group, metric)
        if delta is not None:
            rows.append((group.name, delta, report.paper_delta(group, metric)))
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 4.5))
    width = 0.38
    positions = range(len(rows))
    ours = [r[1].mean for r in rows]
    errors = [r[1].half_width or 0.0 for r in rows]
    ax.bar([p - width / 2 for p in positions], ours, width, yerr=errors, capsize=4, label="these runs")
    paper_values = [r[2] if r[2] is not None else 0.0 for r in rows]
    bars = ax.bar([p + width / 2 for p in positions], paper_values, width, hatch="//", alpha=0.7, label="paper")
    for bar, row in zip(bars, rows):
        if row[2] is None:
            bar.set_visible(False)
            ax.text(bar.get_x() + bar.get_width() / 2, 0, "n/a", ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), [r[0] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set(title=f"{task}: Δ {metric} vs baseline ({report.delta_on}, paired; bars: 95% CI)", ylabel=f"Δ {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
