"""Launch the baseline / +LLM / control runs of one preset, over several seeds, for any registered task.

    python -m tools.sweep --task image_cls --preset vit_small_llama \\
        --variants baseline,frozen,mlp,random_frozen --seeds 0,1,2 [--launcher local|torchrun|slurm] \\
        [--runs-root runs] [--dry-run] -- <extra args for the task's train entry point>

The task comes from ``common.task`` (``--task`` one of ``available_tasks()``; left out, the folder of a
``<task>/configs/x.yaml`` preset path); ``--preset`` is a YAML path or the name of one of the task's presets
(``Task.presets``); each variant must be a ``--llm-variant`` choice of the task's parser (``Task.build_parser``).

One run per (variant, seed), written to ``<runs-root>/<preset>/<variant>/seed<k>`` with
``--config PRESET --llm-variant V --seed K --output-dir DIR --resume auto`` (``baseline`` means
``--llm-variant none``). Launchers:
  local     ``python -m <task>.train ...`` one after the other on this machine;
  torchrun  ``tools/dist_train.sh <task>.train ...`` one after the other (GPUS etc. from the environment);
  slurm     ``JOB_NAME=<preset>-<variant>-s<k> tools/slurm_train.sh <task>.train ...`` all started at once
            (each an ``srun``; GPUS, GPUS_PER_NODE, PARTITION, CPUS_PER_TASK, SRUN_ARGS from the environment),
            then waited for.
``--dry-run`` prints the commands only. Afterwards: ``python -m tools.compare <runs-root>/<preset>``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Sweep variant name -> value of --llm-variant (common.frozen_lm.LLMSpec.variant).
VARIANTS = {
    "baseline": "none",
    "none": "none",
    "frozen": "frozen",
    "finetune": "finetune",
    "mlp": "mlp",
    "random_frozen": "random_frozen",
    "random_trainable": "random_trainable",
}
LAUNCHERS = ("local", "torchrun", "slurm")


@dataclass(frozen=True)
class PlannedRun:
    """One (variant, seed) run and the command that starts it."""

    variant: str
    seed: int
    output_dir: Path
    command: list[str]

    def shell(self) -> str:
        return shlex.join(self.command)


def parse_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def plan_runs(
    task: str,
    preset: Path,
    variants: list[str],
    seeds: list[int],
    launcher: str = "local",
    runs_root: Path = Path("runs"),
    extra: list[str] | None = None,
    resume: bool = True,
    python: str = sys.executable,
) -> list[PlannedRun]:
    """The commands of a sweep, in launch order (variant-major). Raises ValueError on bad input."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; choose from {', '.join(LAUNCHERS)}")
    if len(set(variants)) != len(variants) or len(set(seeds)) != len(seeds):
        raise ValueError("--variants and --seeds must not repeat entries")
    module = f"{task}.train"
    runs = []
    for variant in variants:
        for seed in seeds:
            output_dir = runs_root / preset.stem / variant / f"seed{seed}"
            args = [
                "--config", str(preset),
                "--llm-variant", VARIANTS[variant],
                "--seed", str(seed),
                "--output-dir", str(output_dir),
            ]
            if resume:
                args += ["--resume", "auto"]
            args += list(extra or [])
            if launcher == "local":
                command = [python, "-m", module, *args]
            elif launcher == "torchrun":
                command = [launcher_script("dist_train.sh"), module, *args]
            else:
                job = f"{preset.stem}-{variant}-s{seed}"
                command = ["env", f"JOB_NAME={job}", launcher_script("slurm_train.sh"), module, *args]
            runs.append(PlannedRun(variant, seed, output_dir, command))
    return runs


def launcher_script(name: str) -> str:
    """``tools/<name>`` when running from the repository root, else its absolute path."""
    script = REPO_ROOT / "tools" / name
    return f"tools/{name}" if Path.cwd().resolve() == REPO_ROOT else str(script)


def resolve_task(name: str | None, preset: str):
    """The ``common.task.Task`` of the sweep: ``--task``, else the folder of a ``<task>/configs/...`` preset path."""
    from common.task import available_tasks, get_task

    if name is None:
        parts = Path(preset).parts
        name = parts[parts.index("configs") - 1] if "configs" in parts[1:] else None
        if name is None:
            raise ValueError("give --task (or a preset path under <task>/configs/)")
    if name not in available_tasks():
        raise ValueError(f"unknown task {name!r}; built tasks: {', '.join(available_tasks())}")
    return get_task(name)


def resolve_preset(task, preset: str) -> Path:
    """A preset YAML path as given, or the task's preset of that name (``Task.presets``)."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"preset {path} not found")
        return path
    by_name = {p.stem: p for p in task.presets}
    if preset not in by_name:
        raise ValueError(f"preset {preset} not found: {task.name} has {', '.join(by_name) or 'no presets'}")
    return by_name[preset].relative_to(REPO_ROOT) if Path.cwd().resolve() == REPO_ROOT else by_name[preset]


def check_variants(task, variants: list[str]) -> None:
    """Each variant's ``--llm-variant`` value must be a choice of the task's parser."""
    action = next((a for a in task.build_parser()._actions if a.dest == "llm_variant"), None)
    if action is None:
        raise ValueError(f"{task.name} has no --llm-variant option")
    refused = [v for v in variants if v in VARIANTS and action.choices and VARIANTS[v] not in action.choices]
    if refused:
        raise ValueError(f"{task.name} --llm-variant does not take {', '.join(refused)} "
                         f"(choices: {', '.join(action.choices)})")


def _check_launchable(task: str, launcher: str) -> None:
    if not (REPO_ROOT / task / "train.py").is_file():
        raise ValueError(f"task {task!r} has no train entry point ({task}/train.py)")
    if launcher != "local":
        script = REPO_ROOT / "tools" / ("dist_train.sh" if launcher == "torchrun" else "slurm_train.sh")
        if not script.is_file():
            raise ValueError(f"launcher script {script.relative_to(REPO_ROOT)} not found")


def launch(runs: list[PlannedRun], launcher: str) -> list[tuple[PlannedRun, int]]:
    """Run the commands (from the current directory); local/torchrun one by one, slurm all at once."""
    results: list[tuple[PlannedRun, int]] = []
    if launcher == "slurm":
        processes = []
        for run in runs:
            print(f"[sweep] submit {run.shell()}", flush=True)
            processes.append((run, subprocess.Popen(run.command)))
        for run, process in processes:
            results.append((run, process.wait()))
        return results
    for index, run in enumerate(runs, start=1):
        print(f"[sweep] ({index}/{len(runs)}) {run.shell()}", flush=True)
        results.append((run, subprocess.call(run.command)))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(
        prog="python -m tools.sweep", description=__doc__.split("\n\n")[0],
        epilog="Arguments after '--' go to every run's train command.",
    )
    parser.add_argument("--task", default=None, help="a registered task, e.g. image_cls (default: the preset's folder)")
    parser.add_argument("--preset", required=True,
                        help="preset YAML (image_cls/configs/vit_small_llama.yaml) or a preset name of the task")
    parser.add_argument("--variants", default="baseline,frozen,mlp,random_frozen",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated integers")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local")
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    parser.add_argument("--no-resume", action="store_true", help="do not pass --resume auto")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in parse_list(args.seeds, "seeds")]
    except ValueError as error:
        print(f"error: --seeds must be comma-separated integers ({error})", file=sys.stderr)
        return 2
    try:
        task = resolve_task(args.task, args.preset)
        preset = resolve_preset(task, args.preset)
        variants = parse_list(args.variants, "variants")
        check_variants(task, variants)
        runs = plan_runs(task.name, preset, variants, seeds, args.launcher, args.runs_root, extra,
                         resume=not args.no_resume)
        if not args.dry_run:
            _check_launchable(task.name, args.launcher)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            print(run.shell())
        return 0
    results = launch(runs, args.launcher)
    failed = [(run, code) for run, code in results if code != 0]
    for run, code in failed:
        print(f"[sweep] FAILED (exit {code}): {run.output_dir}", file=sys.stderr)
    print(f"[sweep] {len(results) - len(failed)}/{len(results)} runs succeeded; "
          f"compare with: python -m tools.compare {args.runs_root / preset.stem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
