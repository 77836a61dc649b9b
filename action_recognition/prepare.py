"""Write VideoMAE's ``train.csv`` / ``val.csv`` from the official Something-Something-v2 annotations.

    python -m action_recognition.prepare --annotations /data/ssv2/labels --output-dir /data/ssv2/lists \\
        [--video-dir /data/ssv2/20bn-something-something-v2] [--ext auto|webm|mp4] [--absolute]

Reads ``something-something-v2-{train,validation}.json`` (lists of ``{"id", "label", "template",
"placeholders"}``) and ``something-something-v2-labels.json`` (``{template: "class id"}``). A video's class is
its template with the ``[...]`` brackets removed, looked up in the labels file: the rule of the SSv2 tools of
TSM (``gen_label_sthv2.py``) and mmaction2 (``parse_file_list.py``); VideoMAE shares finished CSVs instead of a
script. Each output line is ``<path> <label>``: ``<id>.<ext>`` relative to the video folder (pass that folder
as ``--data-root`` when training), or absolute with ``--absolute``. With ``--video-dir`` the files are looked
up: ``--ext auto`` takes whichever of ``.webm`` / ``.mp4`` exists, and videos not found are left out and
reported. Exit code 2 with one ``error:`` line for unreadable or inconsistent annotations.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

TRAIN_JSON = "something-something-v2-train.json"
VAL_JSON = "something-something-v2-validation.json"
LABELS_JSON = "something-something-v2-labels.json"
SPLITS = {"train.csv": TRAIN_JSON, "val.csv": VAL_JSON}
VIDEO_EXTS = ("webm", "mp4")


class PrepareError(Exception):
    """Annotations that cannot be converted; the message names the file and entry."""


def template_to_class(template: str) -> str:
    """``"Putting [something] on [something]"`` -> ``"Putting something on something"`` (the labels file's key)."""
    return template.replace("[", "").replace("]", "")


def _read_json(path: Path):
    if not path.is_file():
        raise PrepareError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrepareError(f"{path}: not readable JSON ({e})") from e


def read_label_map(path: Path) -> dict[str, int]:
    """``something-something-v2-labels.json`` -> ``{class name: id}`` (ids 0..N-1, each used once)."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise PrepareError(f"{path}: expected a mapping of class names to ids")
    try:
        labels = {str(name): int(index) for name, index in raw.items()}
    except (TypeError, ValueError) as e:
        raise PrepareError(f"{path}: class ids must be integers ({e})") from e
    if sorted(labels.values()) != list(range(len(labels))):
        raise PrepareError(f"{path}: class ids are not 0..{len(labels) - 1}, each once")
    return labels


def split_entries(path: Path, labels: dict[str, int]) -> list[tuple[str, int]]:
    """``(video id, class id)`` for every entry of an official split file."""
    items = _read_json(path)
    if not isinstance(items, list):
        raise PrepareError(f"{path}: expected a list of videos")
    entries = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise PrepareError(f"{path}: entry {n} lacks 'id' or 'template'")
        name = template_to_class(str(item["template"]))
        if name not in labels:
            raise PrepareError(f"{path}: video {item['id']}: template {item['template']!r} is not a class of "
                               f"{LABELS_JSON}")
        entries.append((str(item["id"]), labels[name]))
    return entries


def video_path(video_id: str, video_dir: Path | None, ext: str) -> Path | None:
    """The file of ``video_id`` (relative ``<id>.<ext>``), or None when ``video_dir`` is given and lacks it."""
    if video_dir is None:
        return Path(f"{video_id}.{'webm' if ext == 'auto' else ext}")
    for candidate in VIDEO_EXTS if ext == "auto" else (ext,):
        if (video_dir / f"{video_id}.{candidate}").is_file():
            return Path(f"{video_id}.{candidate}")
    return None


def write_csv(entries: list[tuple[str, int]], out: Path, video_dir: Path | None, ext: str,
              absolute: bool) -> tuple[int, list[str]]:
    """Write ``<path> <label>`` lines; returns (lines written, ids of videos not found)."""
    lines, missing = [], []
    for video_id, label in entries:
        rel = video_path(video_id, video_dir, ext)
        if rel is None:
            missing.append(video_id)
            continue
        path = (video_dir / rel).resolve() if absolute and video_dir is not None else rel
        lines.append(f"{path} {label}")
    out.write_text("".join(line + "\n" for line in lines))
    return len(lines), missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m action_recognition.prepare", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--annotations", required=True, help=f"folder with {TRAIN_JSON}, {VAL_JSON}, {LABELS_JSON}")
    parser.add_argument("--output-dir", required=True, help="where train.csv and val.csv are written")
    parser.add_argument("--video-dir", default=None, help="the video folder: look files up (and drop missing ones)")
    parser.add_argument("--ext", default="auto", choices=("auto", *VIDEO_EXTS),
                        help="file extension; auto: whichever exists (webm without --video-dir)")
    parser.add_argument("--absolute", action="store_true", help="write absolute paths (needs --video-dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Convert; returns the exit code (0, or 2 with an ``error:`` line)."""
    args = build_parser().parse_args(argv)
    try:
        annotations = Path(args.annotations)
        if not annotations.is_dir():
            raise PrepareError(f"--annotations {annotations}: no such folder")
        video_dir = Path(args.video_dir) if args.video_dir else None
        if video_dir is not None and not video_dir.is_dir():
            raise PrepareError(f"--video-dir {video_dir}: no such folder")
        if args.absolute and video_dir is None:
            raise PrepareError("--absolute needs --video-dir")
        labels = read_label_map(annotations / LABELS_JSON)
        splits = {name: split_entries(annotations / source, labels) for name, source in SPLITS.items()}
        out_dir = Path(args.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, entries in splits.items():
            written, missing = write_csv(entries, out_dir / name, video_dir, args.ext, args.absolute)
            note = f"; {len(missing)} not found in {video_dir} and left out (first: {missing[0]})" if missing else ""
            print(f"{out_dir / name}: {written} videos, {len({label for _, label in entries})} classes{note}")
            if written == 0:
                raise PrepareError(f"{out_dir / name}: no video of {SPLITS[name]} was found in {video_dir}")
    except (PrepareError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
