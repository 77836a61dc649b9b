"""Run configuration: the shared training flags, YAML presets as argparse defaults, the resolved config on disk.

Precedence, lowest to highest: parser defaults < ``--config preset.yaml`` < command-line flags (timm train.py's
overlay). A preset may start from others: ``base: _base/recipe.yaml`` (or a list), its own keys winning; the
resolved config is what ``config.yaml`` saves. YAML keys are the parser's attribute names (``batch_size`` for
``--batch-size``); a key that is not an option is an error naming it. Every option is a real flag, so anything a
preset sets can be overridden on the command line; boolean flags come in pairs (``--model-ema`` /
``--no-model-ema``).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.yaml"
BASE_KEY = "base"  # a preset's overlay key: the preset file(s) it starts from
AMP_CHOICES = ("none", "bf16", "fp16")
SCHED_CHOICES = ("cosine", "tanh", "step", "multistep", "poly", "constant")
SCHED_INTERVALS = ("update", "epoch")
LR_BOUNDS = ("scaled", "absolute")


def pattern_factor(text: str) -> str:
    """argparse type for ``PATTERN=FACTOR`` (an LR multiplier); returns the text unchanged once validated."""
    pattern, sep, factor = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(f"expected PATTERN=FACTOR, got {text!r}")
    try:
        float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"factor of {text!r} is not a number") from None
    return text


def optional_str(text: str) -> str | None:
    """Argument type: ``none`` / ``null`` / empty -> None (e.g. ``--aa none`` turns RandAugment off)."""
    return None if text.strip().lower() in ("", "none", "null") else text


def add_mixup_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """timm ``Mixup`` flags as DeiT / VideoMAE name them (mixup, CutMix, label smoothing); returns the group."""
    mix = parser.add_argument_group("mixup / cutmix / label smoothing")
    mix.add_argument("--mixup", type=float, default=0.8, help="mixup alpha (0: off)")
    mix.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha (0: off)")
    mix.add_argument("--cutmix-minmax", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    mix.add_argument("--mixup-prob", type=float, default=1.0)
    mix.add_argument("--mixup-switch-prob", type=float, default=0.5)
    mix.add_argument("--mixup-mode", default="batch", choices=("batch", "pair", "elem"))
    mix.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    return mix


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags every task's train.py shares (run, schedule, optimizer, precision, EMA, logging).

    Tasks add only their own flags (data, model, loss) on top. ``--batch-size`` is per process;
    the global batch is ``batch_size * world_size * accum_iter``.
    """
    b = argparse.BooleanOptionalAction
    run = parser.add_argument_group("run")
    run.add_argument("--config", default=None, metavar="YAML", help="preset whose keys become this parser's defaults")
    run.add_argument("--output-dir", default="output", help="run directory: config.yaml, log.txt, checkpoints")
    run.add_argument("--resume", default="", metavar="auto|PATH",
                     help="'auto': OUTPUT_DIR/checkpoint.pth if present, else a fresh start; or a checkpoint path")
    run.add_argument("--eval-only", action=b, default=False, help="evaluate (the --resume checkpoint) and exit")
    run.add_argument("--seed", type=int, default=0, help="base seed; rank r uses seed + r")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when available")
    run.add_argument("--num-workers", type=int, default=4, help="DataLoader workers per process")
    run.add_argument("--pin-mem", action=b, default=True, help="pin DataLoader memory (CUDA only)")

    sched = parser.add_argument_group("schedule")
    sched.add_argument("--epochs", type=int, default=100)
    sched.add_argument("--batch-size", type=int, default=64, help="per process")
    sched.add_argument("--accum-iter", type=int, default=1, help="micro-batches per optimizer step")
    sched.add_argument("--total-batch-size", type=int, default=None,
                       help="global batch (samples per optimizer update over all processes): sets --batch-size to it "
                       "/ (world size x --accum-iter)")
    sched.add_argument("--sched", default="cosine", choices=SCHED_CHOICES,
                       help="timm LR schedule (stepped as --sched-interval says)")
    sched.add_argument("--sched-interval", default="update", choices=SCHED_INTERVALS,
                       help="update: the LR follows the schedule at every optimizer update; epoch: it changes once per "
                       "epoch, after the epoch (DeiT main.py: lr_scheduler.step(epoch), so epoch e > 0 trains at the "
                       "schedule's value of epoch e - 1)")
    sched.add_argument("--lr-bounds", default="scaled", choices=LR_BOUNDS,
                       help="scaled: a parameter group's warm-up start and floor are --warmup-lr / --min-lr times its "
                       "LR multiplier (timm lr_scale); absolute: every group warms up from --warmup-lr and decays to "
                       "--min-lr (timm's scheduler over groups with their own base LR)")
    sched.add_argument("--warmup-epochs", type=float, default=5.0)
    sched.add_argument("--warmup-lr", type=float, default=1e-6, help="LR at the start of warmup")
    sched.add_argument("--min-lr", type=float, default=1e-6, help="floor of the decaying schedules")
    sched.add_argument("--decay-epochs", type=float, default=None, help="step: decay interval (timm default 90)")
    sched.add_argument("--decay-milestones", type=int, nargs="+", default=[30, 60], help="multistep: epochs")
    sched.add_argument("--decay-rate", type=float, default=0.1, help="step/multistep factor, poly power")
    sched.add_argument("--save-every", type=int, default=1, help="epochs between checkpoint.pth writes (last always)")
    sched.add_argument("--eval-every", type=int, default=1, help="epochs between evaluations (last always)")
    sched.add_argument("--print-freq", type=int, default=50, help="updates between log lines when not on a TTY")

    opt = parser.add_argument_group("optimizer (over trainable parameters)")
    opt.add_argument("--opt", default="adamw", choices=("adamw", "adam", "sgd"),
                     help="AdamW (DeiT, VideoMAE, Point-BERT), Adam (SQA3D; weight decay as an L2 term) or SGD")
    opt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    opt.add_argument("--lr", type=float, default=5e-4, help="base LR (groups scale it by their lr_scale)")
    opt.add_argument("--weight-decay", type=float, default=0.05)
    opt.add_argument("--opt-betas", type=float, nargs=2, default=[0.9, 0.999])
    opt.add_argument("--opt-eps", type=float, default=1e-8)
    opt.add_argument("--clip-grad", type=float, default=None, help="max global grad norm (off when unset)")
    opt.add_argument("--lr-mult", type=pattern_factor, nargs="*", default=[], metavar="PATTERN=FACTOR",
                     help="LR multiplier for parameters whose name matches the fnmatch PATTERN (or module prefix); "
                     "first match wins, e.g. '*.in_proj.*=10'")
    opt.add_argument("--no-decay-lr-mult", type=float, default=1.0, help="LR multiplier of the no-weight-decay group")
    opt.add_argument("--layer-decay", type=float, default=None, help="layer-wise LR decay (task supplies layer ids)")
    opt.add_argument("--freeze-encoder", action=b, default=False,
                     help="train only the LLM adapter (its two projections; the block as --llm-variant says) and the "
                     "task's head; the encoder keeps its pretrained weights (start from them: --finetune / --ckpts)")

    rt = parser.add_argument_group("precision and runtime")
    rt.add_argument("--amp", default="none", choices=AMP_CHOICES, help="autocast dtype; fp16 adds a GradScaler")
    rt.add_argument("--compile", action=b, default=False, help="torch.compile the training forward")
    rt.add_argument("--find-unused-parameters", action=b, default=False, help="DDP find_unused_parameters")
    rt.add_argument("--model-ema", action=b, default=False, help="keep an EMA of the trainable weights (timm V3)")
    rt.add_argument("--model-ema-decay", type=float, default=0.9999)
    rt.add_argument("--model-ema-warmup", action=b, default=False, help="timm EMA decay warmup")
    rt.add_argument("--log-tensorboard", action=b, default=False, help="also write TensorBoard events to OUTPUT_DIR/tb")
    return parser


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser holding the common flags; the task adds its own arguments to it. A task may declare a common flag
    again (its own default, choices and help, e.g. ``--opt`` limited to what its upstream offers): the task's
    declaration replaces the engine's (``conflict_handler="resolve"``)."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False, conflict_handler="resolve",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_common_args(parser)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the ``--config`` preset (if given) installed as defaults first.

    Note: the preset is installed with ``parser.set_defaults``, so use a fresh parser per call.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_preset(parser, known.config))
    args = parser.parse_args(argv)
    args.config = known.config
    return args


def read_preset(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's keys with its ``base:`` overlays resolved: ``base: FILE`` (or a list of files, applied in order;
    paths relative to the preset's folder) gives the defaults, the preset's own keys win. Raises ``ValueError``
    (cycle, not a mapping, bad ``base``), ``OSError`` and ``yaml.YAMLError`` naming the file."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ValueError(f"'{BASE_KEY}:' cycle: {' -> '.join(str(p) for p in (*_seen, path.resolve()))}")
    data = yaml.safe_load(path.read_text())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    bases = [bases] if isinstance(bases, str) else bases or []
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"{path}: '{BASE_KEY}:' must be a preset file or a list of them, got {bases!r}")
    resolved: dict[str, Any] = {}
    for base in bases:
        resolved.update(read_preset(path.parent / base, (*_seen, path.resolve())))
    resolved.update(data)
    return resolved


def load_preset(parser: argparse.ArgumentParser, path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML preset (``base:`` overlays resolved) and check every key against the parser's options (exits via
    ``parser.error``)."""
    try:
        data = read_preset(path)
    except OSError as e:
        parser.error(f"--config {path}: {e.filename + ': ' if e.filename and str(e.filename) != str(path) else ''}"
                     f"{e.strerror or e}")
    except yaml.YAMLError as e:
        parser.error(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})")
    except ValueError as e:
        parser.error(f"--config {path}: {e}")
    actions = {a.dest: a for a in parser._actions if a.dest != argparse.SUPPRESS and a.dest != "help"}
    defaults = {}
    task = parser.get_default("task")
    for key, value in data.items():
        if key == "task":  # a run's config.yaml names its task; it must be this parser's
            if task is not None and value != task:
                parser.error(f"--config {path}: a config of task '{value}', not {task}")
            continue
        if key not in actions:
            hint = difflib.get_close_matches(str(key).replace("-", "_"), list(actions), n=1)
            parser.error(f"--config {path}: unknown key '{key}' (no such option"
                         + (f"; did you mean '{hint[0]}'?)" if hint else ")"))
        try:
            defaults[key] = _coerce(actions[key], value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            parser.error(f"--config {path}: key '{key}': {e}")
    return defaults


def _coerce(action: argparse.Action, value: Any) -> Any:
    """Convert a YAML value the way argparse would convert the same text on the command line."""
    if value is None:
        return None
    if action.nargs == 0:  # store_true / BooleanOptionalAction
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        if isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        items = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise ValueError(f"expected {action.nargs} values, got {len(items)}")
        if action.nargs == "+" and not items:
            raise ValueError("expected at least one value")
        return [_coerce_one(action, v) for v in items]
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected a single value, got {value!r}")
    return _coerce_one(action, value)


def _coerce_one(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected a scalar, got {value!r}")
    kind = action.type
    if isinstance(value, bool) and kind is not None:
        raise ValueError(f"expected {getattr(kind, '__name__', 'a value')}, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        value = int(value)
    elif kind is float:
        value = float(value)
    elif kind is not None:
        value = kind(str(value))
    elif not isinstance(value, str):
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def namespace_from_config(parser: argparse.ArgumentParser, saved: Mapping[str, Any]) -> argparse.Namespace:
    """A run's saved config (``config.yaml`` or a checkpoint's ``config``) as the namespace ``parser`` would give:
    parser defaults, then the saved values coerced like a preset's. Keys the parser no longer has are ignored."""
    args = parser.parse_args([])
    actions = {a.dest: a for a in parser._actions if a.dest not in (argparse.SUPPRESS, "help")}
    for key, value in saved.items():
        if key in actions:
            try:
                setattr(args, key, _coerce(actions[key], value))
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                raise ConfigError(f"saved config key '{key}': {e}") from e
        elif key == "task":
            setattr(args, key, value)
    return args


def config_value(cfg: Mapping[str, Any] | argparse.Namespace, key: str, default: Any = None) -> Any:
    """``cfg[key]`` of a run config (parsed options or a checkpoint's saved dict); absent or None -> ``default``."""
    values = vars(cfg) if isinstance(cfg, argparse.Namespace) else cfg
    value = values.get(key, default)
    return default if value is None else value


def resolve_total_batch_size(args: argparse.Namespace, world_size: int) -> None:
    """``--total-batch-size`` (samples per optimizer update over all processes) -> per-process ``--batch-size``
    = total / (world size x ``--accum-iter``); unset leaves ``--batch-size`` as it is."""
    if args.total_batch_size is None:
        return
    per_step = world_size * args.accum_iter
    if args.total_batch_size % per_step:
        raise ConfigError(f"--total-batch-size {args.total_batch_size} is not divisible by world size {world_size} "
                          f"x --accum-iter {args.accum_iter}")
    args.batch_size = args.total_batch_size // per_step
    log.info("total batch %d = %d processes x %d x accum %d", args.total_batch_size, world_size, args.batch_size,
             args.accum_iter)


def config_to_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The namespace as plain YAML/``weights_only``-safe values (tuples become lists, paths strings)."""
    return {k: _plain(v) for k, v in sorted(vars(args).items())}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_config(args: argparse.Namespace, output_dir: str | os.PathLike) -> Path | None:
    """Write the resolved config to ``output_dir/config.yaml`` (main process only; returns the path there).

    The file is itself a valid preset: ``--config OUTPUT_DIR/config.yaml`` reproduces the run.
    """
    from . import distributed

    if not distributed.is_main_process():
        return None
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_FILE_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(args), sort_keys=True))
    os.replace(tmp, path)
    return path
