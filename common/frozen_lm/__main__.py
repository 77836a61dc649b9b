"""Command line: inspect a checkpoint's block, or run block(s) on tokens stored in a .npy file.

    python -m common.frozen_lm inspect CKPT [--layers -1] [--final-norm unit] [--dry-run]
    python -m common.frozen_lm apply CKPT --layers 31 --input x.npy --output y.npy [--mask m.npy]
                                          [--final-norm unit] [--dtype float32] [--batch-size 0]

``inspect`` reads only the requested layers (strictly) and prints JSON: family, format, dim, n_layers, n_heads,
n_kv_heads, ffn_hidden, norm_eps, layers, params_per_layer, tensors_read, bytes_read, sha256, ...
CKPT may be a Hugging Face Hub model (``hf://org/name[@rev][/file.gguf]``): ``inspect`` then prints the fetch plan
(files, byte ranges, bytes to fetch) on stderr before fetching, a progress bar while fetching, and adds ``hub`` to
the JSON; ``--dry-run`` prints only the plan (as JSON; only headers are fetched).
``apply`` maps an (N, dim) or (B, N, dim) float array to an array of the same shape and dtype; ``--mask`` is a
(B, N) / (N,) bool array, True = padding. Errors print one ``error: ...`` line on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from .errors import CheckpointError
from .formats import inspect_checkpoint, plan_checkpoint
from .model import DTYPES, FINAL_NORMS, FrozenLM


def _layer_tokens(values: list[str]) -> list[int]:
    try:
        return [int(part) for value in values for part in value.replace(",", " ").split()]
    except ValueError as exc:
        raise ValueError(f"--layers takes integers (e.g. -1 or 30 31 or 30,31): {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The ``inspect`` / ``apply`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m common.frozen_lm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("inspect", "print the block config and what was read, as JSON"),
                            ("apply", "run the block(s) on a .npy array of tokens")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("checkpoint", help="Meta or Hugging Face checkpoint directory, a .gguf file, or a Hub "
                                          "model hf://org/name[@revision][/file.gguf]")
        p.add_argument("--layers", nargs="+", default=["-1"], help="layer indices, negatives from the end")
        p.add_argument("--final-norm", choices=FINAL_NORMS, default="unit")
        if name == "inspect":
            p.add_argument("--dry-run", action="store_true",
                           help="Hub models: print the fetch plan (JSON) and stop before fetching any tensor")
        if name == "apply":
            p.add_argument("--input", required=True, help=".npy float array (N, dim) or (B, N, dim)")
            p.add_argument("--output", required=True, help=".npy file to write")
            p.add_argument("--mask", help=".npy bool array (B, N) or (N,), True = padding")
            p.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="weight storage dtype")
            p.add_argument("--batch-size", type=int, default=0, help="sequences per forward pass (0: all)")
    return parser


def _load_array(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what} file not found: {path}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc


def run_apply(args: argparse.Namespace) -> dict:
    """Load the block(s), run them on ``args.input`` and save ``args.output``; returns a summary."""
    tokens = _load_array(args.input, "input")
    if tokens.dtype.kind != "f" or tokens.ndim not in (2, 3):
        raise ValueError(f"{args.input}: expected a float (N, dim) or (B, N, dim) array, got {tokens.dtype} "
                         f"{tokens.shape}")
    mask = None
    if args.mask:
        mask = _load_array(args.mask, "mask")
        if mask.dtype != np.bool_ and not (mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all()):
            raise ValueError(f"{args.mask}: expected a bool (or 0/1) padding mask, got {mask.dtype}")
        if mask.shape != tokens.shape[:-1]:
            raise ValueError(f"{args.mask}: mask shape {mask.shape} does not match tokens {tokens.shape[:-1]}")
    lm = FrozenLM.from_checkpoint(args.checkpoint, _layer_tokens(args.layers), args.final_norm, args.dtype)
    if tokens.shape[-1] != lm.dim:
        raise ValueError(f"{args.input}: token width {tokens.shape[-1]} != model dim {lm.dim}")
    x = torch.from_numpy(np.ascontiguousarray(tokens if tokens.ndim == 3 else tokens[None]))
    m = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask if mask.ndim == 2 else mask[None]))
    step = args.batch_size if args.batch_size > 0 else x.shape[0]
    with torch.inference_mode():
        out = torch.cat([lm(x[i:i + step], None if m is None else m[i:i + step].bool())
                         for i in range(0, x.shape[0], step)])
    result = out.numpy() if tokens.ndim == 3 else out[0].numpy()
    np.save(args.output, result)
    return {"output": args.output, "shape": list(result.shape), "dtype": str(result.dtype),
            "layers": lm.layer_indices, "final_norm": args.final_norm, "sha256": lm.fingerprint["sha256"]}


def _print_plan(plan: dict) -> None:
    """The fetch plan of a Hub model, on stderr, before anything but headers is fetched."""
    print(f"plan for {plan['repo']}@{plan['commit']}: {plan['tensor_bytes']:,} tensor bytes in "
          f"{sum(len(f['ranges']) for f in plan['files'])} range(s), {plan['bytes_to_fetch']:,} to fetch "
          f"(weights: {plan['weights_bytes']:,} bytes)", file=sys.stderr)
    for entry in plan["files"]:
        ranges = ", ".join(f"{a}-{b}" for a, b in entry["ranges"])
        print(f"  {entry['file']} ({entry['file_bytes']:,} bytes): {entry['bytes']:,} bytes in [{ranges}], "
              f"{entry['bytes_to_fetch']:,} to fetch", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input/checkpoint)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "inspect" and args.dry_run:
            report = plan_checkpoint(args.checkpoint, _layer_tokens(args.layers), args.final_norm)
        elif args.command == "inspect":
            report = inspect_checkpoint(args.checkpoint, _layer_tokens(args.layers), args.final_norm,
                                        on_plan=_print_plan)
        else:
            report = run_apply(args)
    except (CheckpointError, ValueError, OSError) as exc:
        print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
