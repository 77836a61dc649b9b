"""Process-group setup from torchrun or SLURM variables (else one process), and the collectives tasks need.

Launch with ``torchrun`` (``tools/dist_train.sh``) or ``srun`` (``tools/slurm_train.sh``); there is no
``--local_rank`` flag. Under SLURM the master is the first host of ``SLURM_JOB_NODELIST`` and the port is
``MASTER_PORT`` or one derived from ``SLURM_JOB_ID`` (the same on every task of the job).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from .errors import ConfigError

_PORT_BASE, _PORT_SPAN = 20000, 40000


@dataclass(frozen=True)
class LaunchEnv:
    """What the environment says about this process: ``source`` is 'torchrun', 'slurm' or 'single'."""

    source: str
    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None = None
    master_port: int | None = None


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job, and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list: ``"gpu[01-03,07],cpu5"`` -> ``[gpu01, gpu02, gpu03, gpu07, cpu5]``.

    Zero padding of ranges is kept; several bracket groups in one name expand as a product.
    """
    hosts: list[str] = []
    for item in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist):
        names = [""]
        for literal, ranges in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
            options = [literal]
            if ranges:
                options = [literal + n for n in _expand_ranges(ranges)]
            names = [prefix + o for prefix in names for o in options]
        hosts.extend(n for n in names if n)
    return hosts


def _expand_ranges(ranges: str) -> list[str]:
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            out.append(lo)
            continue
        width = len(lo)
        out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
    return out


def launch_env(environ: Mapping[str, str] = os.environ) -> LaunchEnv:
    """Read rank/world size from torchrun's variables, else SLURM's, else a single process."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return LaunchEnv(
            "torchrun", int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)),
            environ.get("MASTER_ADDR"), int(environ["MASTER_PORT"]) if "MASTER_PORT" in environ else None,
        )
    if "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        world = int(environ.get("SLURM_STEP_NUM_TASKS", environ["SLURM_NTASKS"]))
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or environ.get(
            "SLURM_NODELIST", "")
        hosts = expand_nodelist(nodelist)
        if world > 1 and not hosts:
            raise ConfigError("SLURM job with several tasks but no SLURM_JOB_NODELIST to find the master host")
        if "MASTER_PORT" in environ:
            port = int(environ["MASTER_PORT"])
        else:
            port = _PORT_BASE + int(re.sub(r"\D", "", environ.get("SLURM_JOB_ID", "0")) or 0) % _PORT_SPAN
        return LaunchEnv(
            "slurm", int(environ["SLURM_PROCID"]), world, int(environ.get("SLURM_LOCALID", 0)),
            environ.get("MASTER_ADDR") or (hosts[0] if hosts else "127.0.0.1"), port,
        )
    return LaunchEnv("single", 0, 1, 0)


_INFO: DistInfo | None = None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group the launcher set up (nccl on CUDA, gloo on CPU) and pick this rank's device.

    ``device``: 'auto' (CUDA when available), 'cuda' or 'cpu'. One process per GPU: rank uses ``cuda:LOCAL_RANK``.
    """
    global _INFO
    env = launch_env()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    is_dist = env.world_size > 1
    if is_dist and not dist.is_initialized():
        if env.source == "slurm":  # env:// rendezvous reads these
            os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank),
                              MASTER_ADDR=str(env.master_addr), MASTER_PORT=str(env.master_port))
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", rank=env.rank,
                                world_size=env.world_size, device_id=dev if use_cuda else None)
    _INFO = DistInfo(env.rank, env.world_size, env.local_rank, dev, is_dist)
    return _INFO


def current() -> DistInfo:
    """The ``DistInfo`` of the last ``init_distributed()`` call."""
    if _INFO is None:
        raise RuntimeError("init_distributed() (or loop.setup(args)) has not been called in this process")
    return _INFO


def cleanup() -> None:
    """Leave the process group (if any) so the process exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input is untouched)."""
    out = tensor.detach().clone()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a new tensor)."""
    out = tensor.detach().clone()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order; ranks may hold different lengths."""
    if not _active():
        return tensor
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's (picklable) ``obj``, in rank order."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def make_sampler(dataset: Sized, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> DistributedSampler:
    """Training sampler: a ``DistributedSampler`` over this job's ranks, also with one process.

    Using it with one process too keeps the sample order of an N-process run and a 1-process run with the same
    global batch identical (rank r takes every N-th index of the same permutation). ``loop.fit`` calls
    ``set_epoch`` on it.
    """
    return DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle, seed=seed,
                              drop_last=drop_last)


class ShardSampler(Sampler[int]):
    """Evaluation sampler: a contiguous, unpadded slice of the dataset per rank (no duplicated samples).

    ``all_gather_cat`` of per-rank outputs then restores dataset order. Ranks may get different numbers of
    batches, so gather once after the loop, not per batch.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None):
        n, world = len(dataset), num_replicas or get_world_size()
        rank = get_rank() if rank is None else rank
        chunk = math.ceil(n / world)
        self.start, self.stop = min(n, rank * chunk), min(n, (rank + 1) * chunk)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def eval_sampler(dataset: Sized) -> ShardSampler:
    """Evaluation sampler for this job's ranks (see ``ShardSampler``)."""
    return ShardSampler(dataset)
