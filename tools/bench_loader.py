"""Memory and time of loading the LAST block of a LLaMA-7B-shaped checkpoint (``python -m tools.bench loader``).

Writes a checkpoint with LLaMA-7B's width (dim 4096, 32 heads, FFN 11008, vocab 32000; fp16 like Meta's
release) but only ``--n-layers`` layers (default 4: 2.1 GB per format) in two formats, each with its real writer:
Meta (``torch.save`` of ``consolidated.00.pth`` + ``params.json``) and Hugging Face (sharded safetensors via
``safetensors.torch.save_file`` + ``model.safetensors.index.json`` + ``config.json``). Then, each in a fresh
Python process, measures the peak resident set and the wall time of:

- ``ours``: ``FrozenLM.from_checkpoint(path, layers=[-1], dtype=...)`` (reads only that layer's tensors);
- ``whole``: what the official code does — read the whole file into memory (``torch.load`` without mmap; for
  HF every shard with ``safetensors.torch.load_file``), pick the last layer's keys, load them into the fp32
  reference-style block. (``load_file`` memory-maps the shards, so only the pages of the tensors actually used
  become resident: for HF the naive path costs little more than ours; Meta's ``.pth`` read by ``torch.load``
  without mmap is where whole-file loading hurts — 13.5 GB for the real LLaMA-7B.)

Peak RSS is the child's ``VmHWM`` (``/proc/self/status``), not ``getrusage().ru_maxrss``: Linux carries the
parent's RSS at fork time over into the child's ``ru_maxrss`` across ``exec``, which would report the writer's
memory instead of the loader's. The files are read once before measuring (warm page cache for every method) and
deleted at the end unless ``--keep``. The process's RSS right after its imports is reported too
(``rss_after_imports_mib``): torch alone accounts for several hundred MiB of it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common.frozen_lm import meta_ffn_hidden

# Meta params.json of LLaMA-7B (FFN hidden size 11008 follows from dim and multiple_of).
LLAMA_7B = {"dim": 4096, "n_heads": 32, "multiple_of": 256, "norm_eps": 1e-6, "vocab_size": 32000}
HF_NAMES = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
            "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj",
            "feed_forward.w2": "mlp.down_proj", "attention_norm": "input_layernorm",
            "ffn_norm": "post_attention_layernorm"}


def layer_shapes(dim: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """Meta key suffix -> shape of one LLaMA layer."""
    return {"attention.wq": (dim, dim), "attention.wk": (dim, dim), "attention.wv": (dim, dim),
            "attention.wo": (dim, dim), "feed_forward.w1": (ffn, dim), "feed_forward.w2": (dim, ffn),
            "feed_forward.w3": (ffn, dim), "attention_norm": (dim,), "ffn_norm": (dim,)}


def _tensor(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    if len(shape) == 1:
        return torch.ones(shape, dtype=dtype)
    return (torch.randn(shape, generator=gen) * 0.02).to(dtype)


def ffn_hidden(params: dict) -> int:
    """Meta's FFN hidden size for ``params`` (11008 for LLaMA-7B)."""
    return meta_ffn_hidden(params["dim"], params["multiple_of"])


def meta_state(n_layers: int, dtype: torch.dtype, params: dict = LLAMA_7B, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Meta state dict shaped by ``params`` (default LLaMA-7B) with ``n_layers`` layers, embeddings and head."""
    gen = torch.Generator().manual_seed(seed)
    dim, vocab = params["dim"], params["vocab_size"]
    state = {"tok_embeddings.weight": _tensor((vocab, dim), gen, dtype), "norm.weight": torch.ones(dim, dtype=dtype),
             "output.weight": _tensor((vocab, dim), gen, dtype)}
    for i in range(n_layers):
        for key, shape in layer_shapes(dim, ffn_hidden(params)).items():
            state[f"layers.{i}.{key}.weight"] = _tensor(shape, gen, dtype)
    return state


def write_meta(directory: Path, state: dict[str, torch.Tensor], n_layers: int, params: dict = LLAMA_7B) -> Path:
    """``params.json`` + ``consolidated.00.pth`` (one model-parallel shard, as LLaMA-7B ships)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(json.dumps({**params, "n_layers": n_layers}))
    torch.save(state, directory / "consolidated.00.pth")
    return directory


def hf_key(meta_key: str) -> str:
    """Meta key -> Hugging Face LlamaForCausalLM key."""
    top = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    if meta_key in top:
        return top[meta_key]
    _, index, rest = meta_key.split(".", 2)
    return f"model.layers.{index}.{HF_NAMES[rest.removesuffix('.weight')]}.weight"


def write_hf(directory: Path, state: dict[str, torch.Tensor], n_layers: int, params: dict = LLAMA_7B,
             shard_bytes: int = 1 << 30) -> Path:
    """``config.json`` + safetensors shards of at most ~``shard_bytes`` + ``model.safetensors.index.json``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": params["dim"],
              "intermediate_size": ffn_hidden(params), "num_attention_heads": params["n_heads"],
              "num_key_value_heads": params["n_heads"], "num_hidden_layers": n_layers,
              "rms_norm_eps": params["norm_eps"], "vocab_size": params["vocab_size"], "hidden_act": "silu",
              "torch_dtype": "float16"}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][hf_key(key)] = tensor
        size += nbytes
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, directory / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        total += sum(t.numel() * t.element_size() for t in shard.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return directory


# ---- measured in a child process --------------------------------------------------------------------------------
def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _load_whole(path: Path, fmt: str, last: int) -> int:
    """The official way: whole checkpoint in memory, then the last layer into an fp32 reference-style block."""
    from tools.bench_reference import ReferenceLM

    if fmt == "meta":
        state = torch.load(path / "consolidated.00.pth", map_location="cpu", weights_only=True)
        prefix = f"layers.{last}."
        layer = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    else:
        from safetensors.torch import load_file

        state = {}
        for shard in sorted(path.glob("*.safetensors")):
            state.update(load_file(shard))
        prefix = f"model.layers.{last}."
        meta_name = {hf: meta for meta, hf in HF_NAMES.items()}
        layer = {meta_name[k[len(prefix):].removesuffix(".weight")] + ".weight": v
                 for k, v in state.items() if k.startswith(prefix)}
    from common.frozen_lm import read_lm_config

    block = ReferenceLM(read_lm_config(path), n_blocks=1)
    block.layers[0].load_state_dict(layer, strict=True)
    return sum(p.numel() for p in block.parameters())


def child(method: str, fmt: str, path: Path, dtype: str) -> dict:
    """Load the last block once (in this fresh process) and report peak RSS and time."""
    from common.frozen_lm import FrozenLM, read_lm_config

    rss0 = _status_mib("VmRSS")
    last = read_lm_config(path).n_layers - 1
    t0 = time.perf_counter()
    if method == "ours":
        lm = FrozenLM.from_checkpoint(path, layers=[-1], dtype=dtype)
        n_params = sum(p.numel() for p in lm.parameters())
        bytes_read = lm.load_stats["bytes_read"]
    else:
        n_params, bytes_read = _load_whole(path, fmt, last), None
    seconds = time.perf_counter() - t0
    return {"method": method, "format": fmt, "dtype": dtype if method == "ours" else "float32",
            "seconds": seconds, "peak_rss_mib": _status_mib("VmHWM"),
            "rss_after_imports_mib": rss0, "block_params": n_params, "bytes_read": bytes_read}


def _run_child(method: str, fmt: str, path: Path, dtype: str) -> dict:
    cmd = [sys.executable, "-m", "tools.bench_loader", "_child", method, fmt, str(path), dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{method}/{fmt} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warm_cache(directory: Path) -> None:
    for file in directory.iterdir():
        with open(file, "rb") as f:
            while f.read(1 << 24):
                pass


def make_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command line of ``python -m tools.bench loader``."""
    p = argparse.ArgumentParser(prog="python -m tools.bench loader", description=__doc__.split("\n")[0],
                                add_help=add_help)
    p.add_argument("--n-layers", type=int, default=4, help="layers in the written checkpoint (7B has 32)")
    p.add_argument("--dir", help="where to write the checkpoints (default: a new temp dir)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="storage dtypes to load 'ours' into")
    p.add_argument("--json", default="runs/bench/bench_loader.json")
    p.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench_loader``: the benchmark, or (``_child ...``) one measurement in this process."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_child"]:
        method, fmt, path, dtype = argv[1:5]
        print(json.dumps(child(method, fmt, Path(path), dtype)))
        return 0
    parser = make_parser()
    return run(parser.parse_args(argv), parser)


def run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    """Write the checkpoints, measure every (method, format, dtype) in a fresh process, print, write JSON."""
    if args.n_layers < 1:
        p.error("--n-layers must be >= 1")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in ("float32", "bfloat16", "float16") for d in dtypes):
        p.error(f"--dtypes: choose from float32, bfloat16, float16; got {args.dtypes!r}")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_loader_"))
    results = []
    try:
        t0 = time.perf_counter()
        state = meta_state(args.n_layers, torch.float16)
        dirs = {"meta": write_meta(root / "meta", state, args.n_layers),
                "hf": write_hf(root / "hf", state, args.n_layers)}
        del state
        sizes = {f: sum(x.stat().st_size for x in d.iterdir()) for f, d in dirs.items()}
        print(f"wrote {', '.join(f'{f} {s / 1e9:.2f} GB' for f, s in sizes.items())} in "
              f"{time.perf_counter() - t0:.0f} s to {root}", file=sys.stderr)
        for fmt, directory in dirs.items():
            _warm_cache(directory)
            for dtype in dtypes:
                results.append(_run_child("ours", fmt, directory, dtype))
            results.append(_run_child("whole", fmt, directory, "float32"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"LLaMA-7B-shaped checkpoint, {args.n_layers} layers (fp16 on disk): load the last block, fresh process")
    print(f"{'format':<6} {'method':<6} {'block dtype':<12} {'peak RSS MiB':>12} {'after imports':>13} {'time s':>7}")
    for r in results:
        print(f"{r['format']:<6} {r['method']:<6} {r['dtype']:<12} {r['peak_rss_mib']:>12.0f} "
              f"{r['rss_after_imports_mib']:>13.0f} {r['seconds']:>7.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m tools.bench", *sys.argv[1:]])
    out.write_text(json.dumps({"n_layers": args.n_layers, "file_bytes": sizes, "results": results,
                               "torch": torch.__version__, "command": command}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
