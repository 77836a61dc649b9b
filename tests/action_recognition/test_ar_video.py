"""PyAV random access: every wanted frame comes back (checked by the index drawn into it), by seeking to key
frames rather than decoding everything, for webm (VP9) and mp4 (H.264, MPEG-4); broken files raise."""

from __future__ import annotations

import pytest
from ar_fixtures import CODECS, read_index, write_video

from action_recognition.data.video import VideoDecodeError, VideoReader, read_frames


class CountingContainer:
    """Wraps a PyAV container: records seeks and counts decoded frames."""

    def __init__(self, container):
        self.container, self.seeks, self.decoded = container, [], 0

    def seek(self, *args, **kwargs):
        self.seeks.append((args, kwargs))
        return self.container.seek(*args, **kwargs)

    def decode(self, *args):
        for frame in self.container.decode(*args):
            self.decoded += 1
            yield frame

    def close(self):
        self.container.close()


def test_this_pyav_writes_webm_and_mp4():
    assert {ext for ext, _ in CODECS} == {"webm", "mp4"}, CODECS


@pytest.mark.parametrize(("ext", "codec"), CODECS, ids=[c for _, c in CODECS])
def test_random_access_returns_the_wanted_frames(tmp_path, ext, codec):
    path = write_video(tmp_path / f"clip.{ext}", codec, 37, gop=5)
    with VideoReader(path) as reader:
        assert len(reader) == 37
        for indices in ([36], [13, 2, 30, 30, 5], list(range(37)), [36, 0, 18]):
            frames = reader.get_frames(indices)
            assert frames.shape == (len(indices), 40, 48, 3) and frames.dtype.name == "uint8"
            assert [read_index(f) for f in frames] == indices


@pytest.mark.parametrize(("ext", "codec"), CODECS, ids=[c for _, c in CODECS])
def test_a_late_frame_is_reached_by_seeking_not_by_decoding_everything(tmp_path, ext, codec):
    path = write_video(tmp_path / f"clip.{ext}", codec, 37, gop=5)
    with VideoReader(path) as reader:
        counting = reader._container = CountingContainer(reader._container)
        assert read_index(reader.get_frames([35])[0]) == 35
        (args, kwargs), = counting.seeks
        assert kwargs == {"stream": reader._stream, "backward": True} and 0 < args[0] <= reader._pts[35]
        assert counting.decoded < 12  # from the key frame before frame 35 (plus the codec's delay), not 36 frames


def test_files_without_usable_timestamps_are_decoded_sequentially(tmp_path):
    ext, codec = CODECS[0]
    with VideoReader(write_video(tmp_path / f"clip.{ext}", codec, 20)) as reader:
        reader._pts = None  # what _scan leaves for missing or repeated timestamps
        assert [read_index(f) for f in reader.get_frames([19, 3, 3, 0])] == [19, 3, 3, 0]


def test_broken_files_and_bad_indices(tmp_path):
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (garbage, empty, tmp_path / "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=path.name):
            read_frames(path, [0])
    ext, codec = CODECS[0]
    video = write_video(tmp_path / f"ok.{ext}", codec, 10)
    with pytest.raises(IndexError, match="frame 10 out of range"):
        read_frames(video, [0, 10])
    truncated = tmp_path / f"truncated.{ext}"
    truncated.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 3])
    with pytest.raises(VideoDecodeError):  # opens, but frames listed near the end cannot be decoded (or none)
        with VideoReader(truncated) as reader:
            reader.get_frames([len(reader) - 1, 9])

