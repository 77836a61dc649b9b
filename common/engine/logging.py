"""Run logging: ``log.txt`` JSON lines (DeiT keys), console setup, progress bar on a TTY, optional TensorBoard.

Imported as ``from common.engine import logging as runlog``; inside this package ``import logging`` still means
the standard library (absolute imports).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

LOG_NAME = "log.txt"
_HANDLER_TAG = "_frozen_lm_vision_engine"


def setup_logging(rank: int = 0) -> None:
    """Console logging to stderr: INFO on rank 0, WARNING elsewhere (idempotent; other handlers are kept)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    setattr(handler, _HANDLER_TAG, True)
    root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``n_parameters`` (all, shared tensors once), ``n_trainable`` and ``n_frozen`` (``requires_grad=False``).

    A module may name parameters that only hold another memory layout of one counted already (its
    ``layout_copies``, e.g. an FP8 block weight kept transposed for the backward GEMM); those are not counted.
    """
    trainable = frozen = 0
    seen: set[int] = set()
    for module in model.modules():
        copies = getattr(module, "layout_copies", ())
        for name, p in module.named_parameters(recurse=False):
            if name in copies or id(p) in seen:
                continue
            seen.add(id(p))
            if p.requires_grad:
                trainable += p.numel()
            else:
                frozen += p.numel()
    return {"n_parameters": trainable + frozen, "n_trainable": trainable, "n_frozen": frozen}


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterable:
    """A tqdm bar when ``enabled`` and stderr is a terminal, else ``iterable`` itself (no bar in logs/CI)."""
    if not (enabled and sys.stderr.isatty()):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, leave=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the line parseable
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class RunLog:
    """Appends one JSON object per epoch to ``output_dir/log.txt`` (main process only) and mirrors the numbers
    to TensorBoard when asked.

    With ``start_epoch > 0`` (a resumed run) lines of epochs ``>= start_epoch`` left by the interrupted run are
    dropped, so the file reads as one uninterrupted run; with ``start_epoch == 0`` it starts empty.
    """

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True, start_epoch: int = 0,
                 tensorboard: bool = False):
        self.path = Path(output_dir) / LOG_NAME
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if start_epoch > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("epoch", -1) < start_epoch:
                        kept.append(line)
                except (json.JSONDecodeError, AttributeError):
                    continue  # a line cut short by the interruption
        tmp = self.path.with_name(f".{LOG_NAME}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("--log-tensorboard needs the tensorboard package (pip install tensorboard)") from e
            self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tb"))

    def write(self, stats: Mapping[str, Any]) -> None:
        """Append ``stats`` (must contain ``epoch``) as one JSON line; flush to disk immediately."""
        if not self.enabled:
            return
        record = {k: _jsonable(v) for k, v in stats.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, record["epoch"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_log(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON lines of ``output_dir/log.txt``."""
    path = Path(output_dir) / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
