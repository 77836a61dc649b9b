"""The ``--llm-*`` command-line flags every task shares; their attribute names are ``LLMSpec``'s fields with the
``llm_`` prefix, so ``LLMSpec.from_config(args)`` reads them (YAML presets use the same names)."""

from __future__ import annotations

import argparse

from .adapter import DEFAULT_PROJ_INIT, MODES, PROJ_INITS, VARIANTS
from .model import DTYPES, FINAL_NORMS, RANDOM_INITS


def add_llm_args(parser: argparse.ArgumentParser, layers_help: str | None = None) -> argparse._ArgumentGroup:
    """Add the ``LLMSpec`` flags to ``parser`` in their own group, returned so a task can add its own
    (``--llm-position``, ``--adapter-lr``, ...). ``layers_help`` replaces the ``--llm-layers`` help text."""
    b = argparse.BooleanOptionalAction
    llm = parser.add_argument_group("frozen LLM block (common.frozen_lm.LLMSpec)")
    llm.add_argument("--llm-variant", default="none", choices=VARIANTS)
    llm.add_argument("--llm-path", default=None, help="LLM checkpoint: Meta dir, HF dir, .gguf file or hf://org/name")
    llm.add_argument("--llm-layers", type=int, nargs="+", default=[-1],
                     help=layers_help or "block indices, consecutive (negatives count from the end)")
    llm.add_argument("--llm-mode", default="replace", choices=MODES)
    llm.add_argument("--llm-final-norm", default="unit", choices=FINAL_NORMS)
    llm.add_argument("--llm-dtype", default="float32", choices=tuple(DTYPES),
                     help="storage dtype of the frozen weights")
    llm.add_argument("--llm-grad-checkpointing", action=b, default=False,
                     help="recompute the LLM block in the backward pass (saves its activations' memory)")
    llm.add_argument("--llm-fp8", action=b, default=False, help="FP8 GEMMs in the frozen block (frozen variants)")
    llm.add_argument("--llm-seed", type=int, default=None, help="init seed of random_* blocks (default: --seed)")
    llm.add_argument("--llm-random-init", default="normal", choices=tuple(RANDOM_INITS),
                     help="how random_* blocks are drawn: " + "; ".join(f"{k}: {v}" for k, v in RANDOM_INITS.items()))
    llm.add_argument("--llm-proj-init", default=DEFAULT_PROJ_INIT, choices=tuple(PROJ_INITS),
                     help="how the two projections are drawn: " + "; ".join(f"{k}: {v}" for k, v in PROJ_INITS.items()))
    return llm
