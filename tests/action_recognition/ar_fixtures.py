"""Writers of the real on-disk inputs of action_recognition: PyAV-encoded videos, SSv2 annotation files (VideoMAE's
CSVs and the official JSONs) and VideoMAE-layout checkpoints written with torch.save."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import torch

INDEX_BITS = 6  # frame index written as 6 black/white vertical stripes: survives lossy coding

# (extension, encoder) pairs this PyAV build can write, webm first.
CODECS = [(ext, codec) for ext, codec in (("webm", "libvpx-vp9"), ("mp4", "libx264"), ("mp4", "mpeg4"))
          if codec in av.codecs_available]

# The tiny model of the tests: 8 frames of 32 x 32, tubelets 2 x 8 x 8 (64 tokens), width 48.
TINY_MODEL = {"model": "vit_small_patch16_224", "embed_dim": 48, "depth": 2, "num_heads": 3, "patch_size": 8,
              "input_size": 32, "num_frames": 8, "tubelet_size": 2}
TINY_ARGS = ["--model", "vit_small_patch16_224", "--embed-dim", "48", "--depth", "2", "--num-heads", "3",
             "--patch-size", "8", "--input-size", "32", "--short-side-size", "32", "--num-frames", "8",
             "--tubelet-size", "2"]


def frame_image(index: int, width: int, height: int, label: int = 0) -> np.ndarray:
    """RGB frame: the index as stripes in the top half, the label as a grey level in the bottom half."""
    img = np.zeros((height, width, 3), np.uint8)
    stripe = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        if (index >> bit) & 1:
            img[: height // 2, bit * stripe:(bit + 1) * stripe] = 255
    img[height // 2:] = 40 + 60 * label
    return img


def read_index(frame: np.ndarray) -> int:
    """Inverse of ``frame_image``'s stripes."""
    height, width = frame.shape[:2]
    stripe = width // INDEX_BITS
    top = frame[: height // 2].astype(float).mean(axis=(0, 2))
    return sum(1 << bit for bit in range(INDEX_BITS) if top[bit * stripe:(bit + 1) * stripe].mean() > 128)


def write_video(path: Path, codec: str, num_frames: int, width: int = 48, height: int = 40, label: int = 0,
                gop: int = 4) -> Path:
    """Encode ``num_frames`` ``frame_image`` frames with PyAV at 12 fps, a key frame every ``gop`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(i, width, height, label),
                                                                    format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_ssv2(root: Path, num_train: int = 6, num_val: int = 4, num_classes: int = 3) -> dict[str, Path]:
    """``root/videos/<id>.{webm,mp4}`` (codecs alternate, 12-20 frames, landscape and portrait) and
    ``root/lists/{train,val}.csv`` with relative ``<id>.<ext> <label>`` lines (VideoMAE's layout)."""
    videos, lists = root / "videos", root / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "val": []}
    for n in range(num_train + num_val):
        split = "train" if n < num_train else "val"
        ext, codec = CODECS[n % len(CODECS)]
        label = n % num_classes
        size = (48, 40) if n % 2 == 0 else (40, 48)
        write_video(videos / f"{1000 + n}.{ext}", codec, 12 + 2 * (n % 5), *size, label=label)
        lines[split].append(f"{1000 + n}.{ext} {label}")
    for split, entries in lines.items():
        (lists / f"{split}.csv").write_text("\n".join(entries) + "\n")
    return {"videos": videos, "lists": lists}


def write_official_annotations(folder: Path, train: list[tuple[str, str]], val: list[tuple[str, str]],
                               classes: list[str]) -> Path:
    """The official SSv2 JSONs: ``labels`` maps class name -> id string; splits list ``{id, label, template,
    placeholders}`` with the template's ``[something]`` brackets."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "something-something-v2-labels.json").write_text(json.dumps({c: str(i) for i, c in enumerate(classes)}))
    for name, items in (("train", train), ("validation", val)):
        entries = [{"id": vid, "label": template.replace("[", "").replace("]", "").lower(), "template": template,
                    "placeholders": ["a thing"] * template.count("[")} for vid, template in items]
        (folder / f"something-something-v2-{name}.json").write_text(json.dumps(entries))
    return folder


def pretraining_state(encoder: dict[str, torch.Tensor], decoder_dim: int = 24, seed: int = 0) -> dict:
    """A VideoMAE ``PretrainVisionTransformer`` state dict around a fine-tuning model's encoder weights:
    ``encoder.*`` (+ its final ``norm``), a one-block ``decoder.*``, ``encoder_to_decoder``, ``mask_token``."""
    g = torch.Generator().manual_seed(seed)
    width = encoder["patch_embed.proj.weight"].shape[0]
    state = {f"encoder.{k}": v.clone() for k, v in encoder.items() if not k.startswith(("fc_norm.", "head."))}
    state["encoder.norm.weight"], state["encoder.norm.bias"] = torch.ones(width), torch.zeros(width)
    shapes = {"decoder.blocks.0.norm1.weight": (decoder_dim,), "decoder.blocks.0.attn.q_bias": (decoder_dim,),
              "decoder.blocks.0.attn.v_bias": (decoder_dim,), "decoder.blocks.0.attn.qkv.weight": (3 * decoder_dim,
                                                                                                    decoder_dim),
              "decoder.norm.weight": (decoder_dim,), "decoder.head.weight": (2 * 8 * 8 * 3, decoder_dim),
              "encoder_to_decoder.weight": (decoder_dim, width), "mask_token": (1, 1, decoder_dim)}
    state.update({k: torch.randn(*s, generator=g) for k, s in shapes.items()})
    return state


def write_videomae_checkpoint(path: Path, weights: dict[str, torch.Tensor], key: str = "model") -> Path:
    """``torch.save`` as VideoMAE's ``utils.save_model`` does: weights under ``key`` plus epoch and the run's
    ``argparse.Namespace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: weights, "epoch": 2399, "args": argparse.Namespace(model="pretrain_videomae", lr=1.5e-4,
                                                                       window_size=(4, 4, 4))}, path)
    return path
