"""python -m action_recognition.prepare: official SSv2 JSONs -> VideoMAE's train.csv / val.csv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ar_fixtures import write_official_annotations

from action_recognition import prepare
from action_recognition.data import read_annotation_csv

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["Holding something next to something", "Pushing something from left to right",
           "Something falling like a feather or paper"]


def annotations(tmp_path: Path) -> Path:
    return write_official_annotations(
        tmp_path / "labels",
        train=[("11", "Pushing [something] from left to right"), ("12", "Holding [something] next to [something]"),
               ("13", "[Something] falling like a feather or paper")],
        val=[("21", "Holding [something] next to [something]"), ("22", "Pushing [something] from left to right")],
        classes=CLASSES)


def test_templates_without_brackets_are_the_classes(tmp_path):
    assert prepare.main(["--annotations", str(annotations(tmp_path)), "--output-dir", str(tmp_path / "lists")]) == 0
    assert (tmp_path / "lists" / "train.csv").read_text() == "11.webm 1\n12.webm 0\n13.webm 2\n"
    assert (tmp_path / "lists" / "val.csv").read_text() == "21.webm 0\n22.webm 1\n"


def test_video_lookup_picks_the_extension_and_leaves_missing_videos_out(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("11.webm", "12.mp4", "21.mp4", "22.webm"):  # 13 is missing
        (videos / name).write_bytes(b"x")
    out = tmp_path / "lists"
    assert prepare.main(["--annotations", str(annotations(tmp_path)), "--output-dir", str(out), "--video-dir",
                         str(videos), "--absolute"]) == 0
    assert "1 not found" in capsys.readouterr().out
    records = read_annotation_csv(out / "train.csv", num_classes=3)
    assert [(r.path, r.label) for r in records] == [(videos / "11.webm", 1), (videos / "12.mp4", 0)]


def test_bad_annotations_exit_2_with_one_line(tmp_path):
    folder = annotations(tmp_path)
    train = folder / "something-something-v2-train.json"
    train.write_text(train.read_text().replace("Pushing [something] from left to right", "Juggling [something]"))
    done = subprocess.run([sys.executable, "-m", "action_recognition.prepare", "--annotations", str(folder),
                           "--output-dir", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {train}: video 11: template 'Juggling [something]' is not a class of "
                                   "something-something-v2-labels.json")
    assert prepare.main(["--annotations", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")]) == 2
