"""The generic training loop every task's train.py plugs into.

A task supplies the model, its loaders, ``loss_fn(model, batch) -> loss`` and ``evaluate_fn(model, loader) ->
{metric: value}``; ``fit`` does the rest: DDP/compile wrapping, AMP, gradient accumulation (``no_sync`` on
micro-steps), clipping, a per-update timm schedule, EMA, NaN stop, ``log.txt``, checkpoints and resume.

    def main(args):
        info = loop.setup(args)                      # process group, device, seeds, OUTPUT_DIR/config.yaml
        ...build model and datasets...
        loop.fit(args, model, loop.make_loader(train_set, args, train=True), loss_fn,
                 val_loader=loop.make_loader(val_set, args, train=False), evaluate_fn=evaluate,
                 best_metric="acc1", best_mode="max")

    if __name__ == "__main__":
        loop.run_cli(main, build_parser())
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from . import checkpoint, config, distributed, optim, rng
from . import logging as runlog
from .distributed import DistInfo
from .ema import create_ema
from .errors import ConfigError, EngineError, LLMCheckpointError, TrainingDiverged

log = logging.getLogger(__name__)

LossOutput = torch.Tensor | Mapping[str, torch.Tensor]
LossFn = Callable[[nn.Module, Any], LossOutput]
EvalFn = Callable[[nn.Module, Iterable], Mapping[str, float]]
EpochHook = Callable[[int, dict[str, Any]], None]
EpochStatsFn = Callable[[int], Mapping[str, Any]]


def setup(args: argparse.Namespace, save: bool = True) -> DistInfo:
    """Start of every train.py: join the process group, pick the device, seed (``seed + rank``), set up console
    logging, share ``--total-batch-size`` out into the per-process ``--batch-size`` and write the resolved
    ``OUTPUT_DIR/config.yaml`` once (main process; ``save=False``: the caller writes it, e.g. after the data
    decided sizes)."""
    info = distributed.init_distributed(args.device)
    runlog.setup_logging(info.rank)
    rng.seed_everything(args.seed, info.rank)
    if getattr(args, "total_batch_size", None) is not None:
        config.resolve_total_batch_size(args, info.world_size)
    if save:
        config.save_config(args, args.output_dir)
    log.info("rank %d/%d on %s; output in %s", info.rank, info.world_size, info.device, args.output_dir)
    return info


def run_cli(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser,
            argv: Sequence[str] | None = None) -> None:
    """Parse (with ``--config``), then ``run_main(main, args)``."""
    run_main(main, config.parse_args(parser, argv))


def run_main(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """Run ``main(args)``; an ``EngineError`` becomes one line on stderr and its exit code (the table in
    ``errors.py``). The process group is always left."""
    code = 0
    try:
        main(args)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.exit_code
    finally:
        distributed.cleanup()
    if code:
        sys.exit(code)


def create_model(build_model: Callable[[argparse.Namespace], nn.Module], args: argparse.Namespace) -> nn.Module:
    """``build_model(args)`` with LLM-checkpoint problems (``common.frozen_lm.CheckpointError``, an
    ``LLMCheckpointError``) said to be about ``--llm-path`` and other bad values (``ValueError``) turned into a
    ``ConfigError``."""
    try:
        return build_model(args)
    except LLMCheckpointError as e:
        raise LLMCheckpointError(f"--llm-path: {e}") from e
    except ValueError as e:
        raise ConfigError(str(e)) from e


def report_results(metrics: Mapping[str, float], results_path: str | None, is_main: bool) -> dict[str, float]:
    """An evaluation's ``test_*`` metrics: printed as one JSON line (and written to ``results_path`` when given)
    by the main process; returned on every rank."""
    result = {f"test_{k}": v for k, v in metrics.items()}
    if is_main:
        print(json.dumps(result), flush=True)
        if results_path:
            Path(results_path).parent.mkdir(parents=True, exist_ok=True)
            Path(results_path).write_text(json.dumps(result) + "\n")
    return result


def make_loader(dataset: Dataset, args: argparse.Namespace, *, train: bool, batch_size: int | None = None,
                collate_fn: Callable | None = None, drop_last: bool | None = None,
                sampler: Sampler | None = None) -> DataLoader:
    """DataLoader with the job's sampler: shuffled ``DistributedSampler`` (train, ``drop_last`` by default) or an
    unpadded contiguous shard per rank (eval); ``--batch-size`` per process, ``--num-workers``, ``--pin-mem``.

    ``sampler`` replaces the default one (e.g. repeated augmentation); it must already shard across ranks, and
    ``fit`` calls its ``set_epoch`` when it has one."""
    if sampler is None:
        sampler = (distributed.make_sampler(dataset, shuffle=True, seed=args.seed) if train
                   else distributed.eval_sampler(dataset))
    return DataLoader(
        dataset, batch_size=batch_size or args.batch_size, sampler=sampler, num_workers=args.num_workers,
        pin_memory=bool(args.pin_mem and torch.cuda.is_available()),
        drop_last=train if drop_last is None else drop_last, collate_fn=collate_fn,
        persistent_workers=args.num_workers > 0,
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple/list/dict batch to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``--amp bf16|fp16`` on ``device``; a no-op context for ``none``."""
    if amp == "none":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _validate(args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size", "accum_iter", "save_every", "eval_every"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.amp not in config.AMP_CHOICES:
        raise ConfigError(f"--amp must be one of {config.AMP_CHOICES}, got {args.amp!r}")


def fit(
    args: argparse.Namespace,
    model: nn.Module,
    train_loader: Iterable,
    loss_fn: LossFn,
    *,
    val_loader: Iterable | None = None,
    evaluate_fn: EvalFn | None = None,
    best_metric: str | None = None,
    best_mode: str = "max",
    optimizer: torch.optim.Optimizer | None = None,
    dist_info: DistInfo | None = None,
    on_epoch_end: EpochHook | None = None,
    epoch_stats: EpochStatsFn | None = None,
    saved_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``args.epochs`` epochs (or only evaluate with ``--eval-only``).

    Args:
        args: namespace with the ``config.add_common_args`` flags.
        model: the unwrapped model; moved to the device here. Frozen parameters stay out of the optimizer,
            the EMA average and the checkpoints.
        train_loader: sized iterable of batches (``make_loader``); its ``set_epoch`` (or its sampler's) is called
            per epoch.
        loss_fn: ``loss_fn(train_model, batch) -> loss`` or ``{"loss": loss, other: tensor...}`` (others are
            logged as ``train_<other>``); the batch is already on the device, autocast is active. ``train_model``
            is the DDP/compiled wrapper: call it, don't read attributes off it.
        val_loader, evaluate_fn: ``evaluate_fn(model, loader) -> {name: float}``, run on every rank in eval mode
            under ``no_grad`` + autocast, on the model and on the EMA; logged as ``test_<name>`` /
            ``test_ema_<name>``. Results must be identical on all ranks (reduce/gather inside).
        best_metric, best_mode: the ``evaluate_fn`` key selecting ``best.pth``, and 'max' or 'min'.
        optimizer: defaults to ``optim.build_optimizer(args, model)`` (pass one for layer decay).
        dist_info: defaults to the one from ``setup``.
        on_epoch_end: ``hook(epoch, stats)`` after the epoch's log line and checkpoint.
        epoch_stats: ``fn(epoch) -> {key: value}`` called on every rank after the evaluation; its entries join
            the epoch's log line (rank 0's are written, so reduce across ranks inside).
        saved_config: the run config stored in the checkpoints (default: ``args``); a task whose optimizer and
            schedule see derived values (e.g. LRs scaled by the batch) passes the config as given, so a
            checkpoint's config rebuilds the run without scaling twice.

    Returns:
        ``{"best": {metric, mode, value, epoch}, "last": last epoch's stats}``; with ``--eval-only``,
        ``{"test": metrics}``.

    Raises:
        TrainingDiverged: loss NaN/inf (the last checkpoint on disk is the last good one).
    """
    _validate(args)
    if best_mode not in ("max", "min"):
        raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    info = dist_info or distributed.current()
    device = info.device
    model.to(device)
    counts = runlog.count_parameters(model)
    log.info("parameters: %s", json.dumps(counts))
    out_dir = Path(args.output_dir)
    can_eval = evaluate_fn is not None and val_loader is not None

    optimizer = optimizer or optim.build_optimizer(args, model)
    updates_per_epoch = math.ceil(len(train_loader) / args.accum_iter)
    scheduler = optim.build_scheduler(args, optimizer, updates_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=args.find_unused_parameters)
    train_model = torch.compile(ddp_model) if args.compile else ddp_model
    ema = create_ema(model, args.model_ema_decay, args.model_ema_warmup) if args.model_ema else None

    best = {"metric": best_metric, "mode": best_mode, "value": None, "epoch": None}
    start_epoch = 0
    resume_path = checkpoint.resolve_resume(args.resume, out_dir)
    if resume_path is not None:
        ckpt = checkpoint.restore(resume_path, model=model, optimizer=None if args.eval_only else optimizer,
                                  scheduler=scheduler, scaler=scaler, ema=ema, rank=info.rank,
                                  restore_rng=not args.eval_only)
        start_epoch = ckpt["epoch"] + 1
        saved_best = ckpt.get("best") or {}
        if saved_best.get("metric") == best_metric and saved_best.get("mode") == best_mode:
            best.update(value=saved_best.get("value"), epoch=saved_best.get("epoch"))
        log.info("resumed from %s: epoch %d done, continuing at epoch %d", resume_path, ckpt["epoch"], start_epoch)
    elif args.resume == "auto":
        log.info("--resume auto: no %s in %s, starting fresh", checkpoint.LATEST_NAME, out_dir)
    elif (out_dir / checkpoint.LATEST_NAME).is_file() and not args.eval_only:
        log.warning("starting fresh in %s: its checkpoints and log.txt will be replaced (--resume auto continues "
                    "instead)", out_dir)

    if args.eval_only:
        if not can_eval:
            raise ConfigError("--eval-only needs a validation loader and an evaluate function")
        test = _evaluate_all(evaluate_fn, model, ema, val_loader, device, args.amp)
        if info.is_main:
            print(json.dumps(test), flush=True)
        return {"test": test}

    if start_epoch >= args.epochs:
        log.info("all %d epochs are done already (raise --epochs to train longer)", args.epochs)
    task_tag = {"task": args.task} if getattr(args, "task", None) else {}  # which task wrote this log.txt
    run_log = runlog.RunLog(out_dir, enabled=info.is_main, start_epoch=start_epoch, tensorboard=args.log_tensorboard)
    stats: dict[str, Any] = {}
    try:
        for epoch in range(start_epoch, args.epochs):
            t0 = time.time()
            _set_epoch(train_loader, epoch)
            train = train_one_epoch(
                train_model, model, train_loader, loss_fn, optimizer, scheduler, scaler, ema, args, info, epoch,
                updates_per_epoch)
            stats = {"epoch": epoch, **task_tag, **{f"train_{k}": v for k, v in train.items()}}
            last = epoch == args.epochs - 1
            is_best = False
            if can_eval and ((epoch + 1) % args.eval_every == 0 or last):
                test = _evaluate_all(evaluate_fn, model, ema, val_loader, device, args.amp)
                stats.update(test)
                if best_metric is not None:
                    is_best = _update_best(best, test, epoch)
                    stats[f"best_{best_metric}"] = best["value"]
            if epoch_stats is not None:
                stats.update(epoch_stats(epoch))
            stats.update(counts, epoch_time=round(time.time() - t0, 3))
            run_log.write(stats)
            log.info("epoch %d: %s", epoch, json.dumps({k: v for k, v in stats.items() if k not in counts}))
            _save(saved_config or config.config_to_dict(args), out_dir, info, model, optimizer, scheduler, scaler,
                  ema, best, epoch,
                  latest=last or (epoch + 1) % args.save_every == 0, is_best=is_best)
            if on_epoch_end is not None:
                on_epoch_end(epoch, stats)
    finally:
        run_log.close()
    return {"best": best, "last": stats}


def _set_epoch(loader: Iterable, epoch: int) -> None:
    """Advance the loader's samplers (or a loader with its own ``set_epoch``, e.g. DALI's) to ``epoch``."""
    seen = set()
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if owner is not None and id(owner) not in seen and hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
            seen.add(id(owner))


def _update_best(best: dict[str, Any], test: Mapping[str, float], epoch: int) -> bool:
    key = f"test_{best['metric']}"
    if key not in test:
        raise ConfigError(f"best metric {best['metric']!r} is not among the evaluation results "
                          f"({', '.join(k.removeprefix('test_') for k in test)})")
    value = test[key]
    old = best["value"]
    better = old is None or (value > old if best["mode"] == "max" else value < old)
    if better and math.isfinite(value):
        best.update(value=value, epoch=epoch)
        return True
    return False


def _evaluate_all(evaluate_fn: EvalFn, model: nn.Module, ema: Any, loader: Iterable, device: torch.device,
                  amp: str) -> dict[str, float]:
    out = {f"test_{k}": v for k, v in evaluate(evaluate_fn, model, loader, device, amp).items()}
    if ema is not None:
        out.update({f"test_ema_{k}": v for k, v in evaluate(evaluate_fn, ema.module, loader, device, amp).items()})
    return out


def evaluate(evaluate_fn: EvalFn, model: nn.Module, loader: Iterable, device: torch.device,
             amp: str = "none") -> dict[str, float]:
    """Run ``evaluate_fn(model, loader)`` in eval mode under ``no_grad`` and autocast; values as floats."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, amp):
            metrics = evaluate_fn(model, loader)
    finally:
        if was_training:
            set_train_mode(model)
    return {k: float(v) for k, v in metrics.items()}


def _save(run_config: Mapping[str, Any], out_dir: Path, info: DistInfo, model: nn.Module, optimizer, scheduler, scaler,
          ema, best: dict[str, Any], epoch: int, *, latest: bool, is_best: bool) -> None:
    if not (latest or is_best):
        return
    rng_states = distributed.all_gather_object(rng.capture_rng_state())  # collective: every rank takes part
    if info.is_main:
        state = checkpoint.build_state(model=model, epoch=epoch, config=dict(run_config),
                                       optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema,
                                       rng=rng_states, best=best)
        if latest:
            checkpoint.save(out_dir / checkpoint.LATEST_NAME, state)
        if is_best:
            checkpoint.save(out_dir / checkpoint.BEST_NAME, state)
    distributed.barrier()


def _split_loss(out: LossOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, Mapping) and "loss" in out:
        return out["loss"], {k: v for k, v in out.items() if k != "loss"}
    raise TypeError(f"loss_fn must return a tensor or a mapping with a 'loss' entry, got {type(out).__name__}")


def train_one_epoch(
    train_model: nn.Module,
    model: nn.Module,
    loader: Iterable,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    ema: Any,
    args: argparse.Namespace,
    info: DistInfo,
    epoch: int,
    updates_per_epoch: int,
) -> dict[str, float]:
    """One pass over ``loader``; returns epoch means over all ranks (``loss``, ``lr``, extra loss terms).

    Every ``accum_iter`` micro-batches (fewer for the epoch's last cycle) make one optimizer update; each
    micro-loss is divided by the cycle length so an update sees the mean gradient of its cycle. The schedule is
    set before each update from the global update count, so a resumed run follows the same LR curve.
    """
    device, accum = info.device, args.accum_iter
    n = len(loader)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    update = epoch * updates_per_epoch
    per_epoch = optim.per_epoch(args)
    if per_epoch and scheduler is not None:  # DeiT: step(e) after epoch e sets the LR of epoch e + 1
        scheduler.step(max(epoch - 1, 0))
    loss_sum, extra_sums, lr_sum, n_micro, n_updates = 0.0, {}, 0.0, 0, 0
    set_train_mode(train_model)
    optimizer.zero_grad(set_to_none=True)
    batches = runlog.progress(loader, total=n, desc=f"epoch {epoch}", enabled=info.is_main)
    for i, batch in enumerate(batches):
        cycle_start = i - i % accum
        cycle_len = min(accum, n - cycle_start)
        final_micro = i == cycle_start + cycle_len - 1
        if i == cycle_start and scheduler is not None and not per_epoch:
            scheduler.step_update(update)
        batch = to_device(batch, device)
        sync = train_model_no_sync(train_model) if info.distributed and not final_micro else nullcontext()
        with sync:
            with autocast(device, args.amp):
                loss, extras = _split_loss(loss_fn(train_model, batch))
            # the mean over ranks doubles as a consistent NaN check: every rank stops at the same step
            value = distributed.all_reduce_mean(loss.detach().float()).item()
            if not math.isfinite(value):
                latest = Path(args.output_dir) / checkpoint.LATEST_NAME
                kept = f"last good checkpoint: {latest}" if latest.is_file() else "no checkpoint was written yet"
                raise TrainingDiverged(f"training loss is {value} at epoch {epoch}, batch {i + 1}/{n}; stopped "
                                       f"without saving ({kept})")
            scaler.scale(loss / cycle_len).backward()
        loss_sum += value
        for k, v in extras.items():
            extra_sums[k] = extra_sums.get(k, 0.0) + float(v.detach().float())
        n_micro += 1
        if not final_micro:
            continue
        lr_sum += optim.base_lr(optimizer)
        if args.clip_grad is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, args.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model, step=update)
        update += 1
        n_updates += 1
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{loss_sum / n_micro:.4f}", lr=f"{optim.base_lr(optimizer):.2e}")
        elif info.is_main and args.print_freq and n_updates % args.print_freq == 0:
            log.info("epoch %d [%d/%d] loss %.4f lr %.3e", epoch, i + 1, n, loss_sum / n_micro,
                     optim.base_lr(optimizer))
    if n_micro == 0:
        raise ConfigError("the training loader yielded no batch (dataset smaller than one batch with drop_last?)")
    stats = {"loss": loss_sum / n_micro, "lr": lr_sum / max(n_updates, 1)}
    for k in sorted(extra_sums):
        stats[k] = distributed.all_reduce_mean(torch.tensor(extra_sums[k] / n_micro, device=device)).item()
    return stats


HOLD_STATISTICS = "hold_running_stats"  # set on a norm layer whose running statistics must not move (frozen encoder)


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except normalisation layers marked ``HOLD_STATISTICS``, which stay in eval mode: they
    normalise with their stored statistics and do not update them (mmcv's ``norm_eval``)."""
    model.train()
    for module in model.modules():
        if getattr(module, HOLD_STATISTICS, False):
            module.eval()


def train_model_no_sync(train_model: nn.Module):
    """DDP's ``no_sync()`` context, also through a ``torch.compile`` wrapper."""
    inner = getattr(train_model, "_orig_mod", train_model)
    return inner.no_sync()
