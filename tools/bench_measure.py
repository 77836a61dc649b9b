"""Timing, peak memory and matmul-peak measurement for ``tools.bench`` (CUDA and CPU).

- Time: CUDA events around each step (one synchronisation at the end, so the host never stalls the queue),
  ``time.perf_counter`` on the CPU; the median over the timed steps is reported.
- Peak memory: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (all live tensors: weights,
  optimizer state, activations, workspace); on the CPU the process's peak resident set (``VmHWM`` in
  ``/proc/self/status``, reset through ``/proc/self/clear_refs``) minus the resident set when the measurement
  started — an estimate (allocator caching and shared pages blur it), comparable between configurations of one run.
- Matmul peak: the best time of a large square GEMM in the benchmark's dtype (and an FP8 ``torch._scaled_mm`` on
  FP8 GPUs), measured in the same run so "% of peak" is relative to this machine right now.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from common.frozen_lm.fp8 import E4M3, scaled_mm_supported

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn: Callable[[], object], n: int, device: torch.device) -> list[float]:
    """Seconds taken by each of ``n`` calls of ``fn`` (device time on CUDA)."""
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(values: list[float]) -> float:
    """Median (the benchmark's summary statistic: robust to one slow step)."""
    return statistics.median(values)


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def release_memory(device: torch.device) -> None:
    """Free what the previous configuration left: Python garbage, the CUDA cache, glibc's free heap."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory since :meth:`reset`, in MiB (see the module docstring for what is measured)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_rss_peak_delta"
        self._baseline = 0.0
        self._resettable = True

    def reset(self, rebaseline: bool = True) -> None:
        """Start a new measurement window; on the CPU ``rebaseline=False`` keeps the earlier reference RSS (so a
        later window still counts what was allocated since the first one, e.g. the model's weights)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self._resettable = False
            self.method = "cpu_rss_peak_delta_unreset"
        if rebaseline:
            self._baseline = _proc_status_mib("VmRSS") or 0.0

    def peak_mib(self) -> float | None:
        """Peak since :meth:`reset` (CPU: increase of the resident set over its value at reset)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _proc_status_mib("VmHWM")
        return None if peak is None else max(peak - self._baseline, 0.0)


def gemm_peak_tflops(dtype: torch.dtype, device: torch.device, size: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` TFLOP/s of a ``size``-square GEMM in ``dtype``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up (library initialisation, kernel selection)
    synchronize(device)
    best = min(time_steps(lambda: a @ b, repeats, device))
    return 2 * size**3 / best / 1e12


def fp8_gemm_peak_tflops(device: torch.device, size: int, repeats: int = 5) -> float | None:
    """Best TFLOP/s of a ``size``-square e4m3 ``torch._scaled_mm`` (bf16 output); None where unsupported."""
    if not scaled_mm_supported(device, size, size):
        return None
    a = torch.randn(size, size, device=device).to(E4M3)
    b = torch.randn(size, size, device=device).to(E4M3).t()  # column-major, as cuBLASLt wants
    one = torch.ones((), device=device)

    def run():
        return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    run()
    synchronize(device)
    best = min(time_steps(run, repeats, device))
    return 2 * size**3 / best / 1e12
