"""The task interface: what each task folder implements so the engine and ``tools/`` run it by name.

A task is a subclass of :class:`Task` in ``<task>/task.py`` bound to the module-level name ``TASK``. Nothing in
``common/`` imports a task module at import time; :func:`get_task` imports ``<name>.task`` on request.

    from common.task import get_task
    task = get_task("point_cloud")
    task.train(["--config", "point_cloud/configs/scanobjectnn_hardest_llama.yaml", "--data-path", ...])

The generic entry points (:mod:`common.engine.runner`) do the rest: parse (preset + flags), set up the process
group, build data and model, the optimizer, ``loop.fit`` with every evaluation set, errors as one line and an exit
code, reloading a trained run.
"""

from __future__ import annotations

import argparse
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

# Every task this repository knows, in the order tools list them. A task counts as built once ``<name>/task.py``
# defines ``TASK``; :func:`available_tasks` lists the built ones.
TASK_NAMES = ("image_cls", "point_cloud", "action_recognition", "motion_forecasting", "vqa_2d", "vqa_3d")
REPO_ROOT = Path(__file__).resolve().parents[1]


class AnalysisUnavailable(Exception):
    """A task (or the model of a run) that offers no ``tools.analyze`` hooks; tools skip it with one line."""


@dataclass
class TaskData:
    """What ``Task.build_data`` returns.

    Attributes:
        train: the training loader (sized iterable of batches; ``loop.make_loader`` or a task's own).
        evals: evaluation sets by name, in order; each value is whatever ``Task.evaluate`` takes (one loader, or
            e.g. an image loader and a text loader for retrieval). The first set's metrics are logged as
            ``test_<metric>``, the others' as ``test_<set>_<metric>``.
        skipped: cumulative counts of samples skipped on this rank so far, by reason (``{"train_no_agent": 3}``);
            the runner logs the per-epoch difference, summed over ranks.
        info: sizes and facts the data decided (``num_classes``...), for logging.
    """

    train: Iterable | None
    evals: dict[str, Any] = field(default_factory=dict)
    skipped: Callable[[], Mapping[str, int]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisSample:
    """One input for ``tools.analyze``: the model input batch (size 1) and what to draw its tokens on."""

    name: str
    inputs: Any
    display: Any  # an image array (H, W, 3), a point cloud (N, 3), a video (T, H, W, 3), ...


class Task(ABC):
    """One task: its flags, data, model, loss, metrics, presets and analysis hooks.

    Class attributes:
        name: the folder name (``image_cls``).
        best_metric / best_mode: the ``evaluate`` key that selects ``best.pth`` and ``'max'`` or ``'min'``.
        metrics: the keys ``evaluate`` returns for the first evaluation set, main metric first (for reports).
        graft: one line naming where the LLM block sits in the model (for READMEs and ``--help``).
        head_prefixes: parameter-name prefixes of the head after the block (``--freeze-encoder`` trains them and
            the LLM adapter only).
        lr_reference_batch / lr_scaled_keys: LR scaling by the global batch (DeiT 512, VideoMAE 256; adds
            ``--unscale-lr``); None: LRs as given.

    Optional hooks (defaults do nothing): ``check_args``, ``build_optimizer``, ``initialize`` (pretrained weights
    unless resuming, SyncBN), ``complete_config`` (sizes an old checkpoint's config lacks), ``analysis_samples`` /
    ``analysis_spec``. A task may redeclare a common flag in ``add_args`` (its declaration wins).
    """

    name: ClassVar[str]
    best_metric: ClassVar[str]
    best_mode: ClassVar[str] = "max"
    metrics: ClassVar[tuple[str, ...]] = ()
    graft: ClassVar[str] = ""
    # LR scaling by the global batch (DeiT: 512, VideoMAE: 256): the optimizer and schedule get the keys of
    # ``lr_scaled_keys`` x global batch / ``lr_reference_batch`` unless ``--unscale-lr``; None: LRs as given.
    # ``--freeze-encoder`` keeps these (and the LLM adapters) trainable: the head after the frozen block.
    head_prefixes: ClassVar[tuple[str, ...]] = ("head.",)
    lr_reference_batch: ClassVar[int | None] = None
    lr_scaled_keys: ClassVar[tuple[str, ...]] = ("lr",)

    # ---- what every task implements -------------------------------------------------------------------------
    @abstractmethod
    def add_args(self, parser: argparse.ArgumentParser) -> None:
        """Add this task's flags (data, model, LLM, loss) on top of the engine's common ones."""

    @abstractmethod
    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        """Datasets and loaders for this process. Sizes the model needs (classes, answers) are written back into
        ``args`` under flags the task declares, so a run's saved config rebuilds its model without the data."""

    @abstractmethod
    def build_model(self, args: argparse.Namespace) -> nn.Module:
        """The model of ``args`` (with the adapter of its ``llm_*`` keys); sizes come from ``args`` only."""

    @abstractmethod
    def loss_fn(self, args: argparse.Namespace, data: TaskData) -> Callable[[nn.Module, Any], Any]:
        """``loss(train_model, batch) -> tensor | {"loss": tensor, term: tensor}`` (see ``loop.fit``)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, eval_set: Any, args: argparse.Namespace) -> dict[str, float]:
        """Metrics of ``model`` on one evaluation set, identical on every rank (reduce inside)."""

    # ---- defaults a task may override ---------------------------------------------------------------------------
    def check_args(self, args: argparse.Namespace) -> None:
        """Fail fast on bad values (raise ``ConfigError``) before data or checkpoints are read. The default checks
        the ``llm_*`` settings and that ``--llm-path`` exists (a local path or a Hub id; else exit 5); a task
        that overrides it calls ``super()``."""
        from common.engine.errors import ConfigError, LLMCheckpointError
        from common.frozen_lm import LLMSpec
        from common.frozen_lm.formats import is_hub_path

        try:
            spec = LLMSpec.from_config(args)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if spec.enabled and not (Path(spec.path).exists() or is_hub_path(spec.path)):
            raise LLMCheckpointError(f"--llm-path: {spec.path}: no such file or directory")

    def best_for(self, args: argparse.Namespace) -> tuple[str, str]:
        """(metric, 'max' | 'min') selecting ``best.pth`` for this run; a task whose datasets report different
        metrics (VQA score vs retrieval rsum) chooses by ``args``. Default: the class attributes."""
        return self.best_metric, self.best_mode

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer of ``args`` (``--opt``, ``--lr`` as given, LR multipliers) over trainable parameters."""
        from common.engine import optim

        return optim.build_optimizer(args, model)

    def initialize(self, model: nn.Module, args: argparse.Namespace, resume: Path | None) -> nn.Module:
        """Before training: start from pretrained / fine-tuned weights (``--finetune``, ``--ckpts``) when the run
        does not resume (``resume`` is None), convert layers for the job (SyncBatchNorm); returns the model to
        train. The default returns ``model`` unchanged."""
        return model

    def complete_config(self, saved: dict[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
        """``load_run``: fill sizes an older checkpoint's saved config lacks from its weights (in place). The
        default does nothing."""
        return None

    def analysis_samples(self, args: argparse.Namespace, paths: Sequence[str]) -> list[AnalysisSample]:
        """Inputs for ``tools.analyze`` (paths to files of the task's input format)."""
        raise AnalysisUnavailable(f"{self.name}: tools.analyze is not wired for this task")

    def analysis_spec(self, model: nn.Module, inputs: Any) -> Any:
        """``tools.analysis.spec.AnalysisSpec`` of this model: which tokens, and their layout for drawing."""
        raise AnalysisUnavailable(f"{self.name}: tools.analyze is not wired for this task")

    # ---- derived ----------------------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return REPO_ROOT / self.name

    @property
    def presets(self) -> list[Path]:
        """Preset YAMLs of the paper rows and controls (``<task>/configs/*.yaml``)."""
        return sorted((self.folder / "configs").glob("*.yaml"))

    @property
    def paper_rows(self) -> dict[str, str]:
        """Preset name -> the paper row it reproduces, from ``<task>/scripts/paper_rows.txt`` (``preset  row`` per
        line, ``#`` comments); empty when the task has no such file."""
        path = self.folder / "scripts" / "paper_rows.txt"
        rows: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    preset, _, row = line.strip().partition(" ")
                    rows[preset] = row.strip()
        return rows

    def build_parser(self, description: str | None = None) -> argparse.ArgumentParser:
        from common.engine import config

        parser = config.make_parser(description or f"{self.name}: train ± a frozen LLM block")
        self.add_args(parser)
        if self.lr_reference_batch is not None:
            names = "/".join(f"--{k.replace('_', '-')}" for k in self.lr_scaled_keys)
            parser.add_argument("--unscale-lr", action=argparse.BooleanOptionalAction, default=False,
                                help=f"use {names} as given instead of x global batch / {self.lr_reference_batch}")
        parser.set_defaults(task=self.name)  # written into config.yaml; a config of another task is refused
        return parser

    def train(self, argv: Sequence[str] | None = None) -> None:
        """``python -m <task>.train``: parse, train, exit with the error family's code on a bad input."""
        from common.engine import runner

        runner.run_train(self, argv)


def get_task(name: str) -> Task:
    """The registered task called ``name`` (imports ``<name>.task``)."""
    if name not in TASK_NAMES:
        raise KeyError(f"unknown task {name!r} (tasks: {', '.join(TASK_NAMES)})")
    module = importlib.import_module(f"{name}.task")
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise TypeError(f"{name}/task.py must define TASK, an instance of common.task.Task")
    return task


def available_tasks() -> list[str]:
    """Names of the tasks whose ``<name>/task.py`` exists (built), in ``TASK_NAMES`` order."""
    return [name for name in TASK_NAMES if (REPO_ROOT / name / "task.py").is_file()]
