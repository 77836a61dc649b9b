"""Frame-accurate random access into a video file with PyAV (``.webm`` VP8/VP9, ``.mp4`` H.264/MPEG-4, ...).

VideoMAE reads SSv2 with ``decord.VideoReader(...).get_batch(indices)``; this is the PyAV equivalent. Opening a
file demuxes its video packets once (no decoding) to learn every frame's presentation timestamp and where the
key frames are; the frame count is the number of packets, as decord counts it. ``get_frames(indices)`` then
decodes only what it needs: for each wanted frame it seeks to the key frame at or before it
(``container.seek(pts, stream=..., backward=True)``) unless decoding forward from the current position is
shorter, and decodes forward to the frame's timestamp. Files whose timestamps cannot be trusted fall back to one
sequential decode from the start.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np


class VideoDecodeError(Exception):
    """A video that cannot be opened or decoded, or holds fewer frames than asked for (the message names it)."""


# What PyAV/FFmpeg raise for a missing, truncated, corrupt or non-video file.
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


class VideoReader:
    """One open video file: ``len(reader)`` frames, ``get_frames(indices) -> (n, H, W, 3) uint8`` RGB.

    Use as a context manager (or call ``close``). Decoding runs single-threaded, like VideoMAE's
    ``VideoReader(num_threads=1)``: the data loader's workers are the parallelism.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except DECODE_ERRORS as e:
            raise VideoDecodeError(f"{self.path}: cannot open ({type(e).__name__}: {e})") from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(f"{self.path}: no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_count = 1
            self._pts, self._keyframes = self._scan()
        except DECODE_ERRORS as e:
            self.close()
            raise VideoDecodeError(f"{self.path}: cannot read ({type(e).__name__}: {e})") from e
        except VideoDecodeError:
            self.close()
            raise
        if not self._pts:
            self.close()
            raise VideoDecodeError(f"{self.path}: no video frames")

    def _scan(self) -> tuple[list[int] | None, list[int]]:
        """Presentation timestamps of all frames in display order (None if any is missing) and key-frame ones."""
        pts, keyframes, missing, count = [], [], False, 0
        for packet in self._container.demux(self._stream):
            if packet.size == 0:  # the flush packet at the end of the stream
                continue
            count += 1
            if packet.pts is None:
                missing = True
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
        if missing or len(set(pts)) != len(pts):
            self._count = count
            return None, []
        self._count = len(pts)
        return sorted(pts), sorted(keyframes)

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as one ``(len(indices), H, W, 3)`` uint8 array."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("get_frames needs at least one frame index")
        bad = [i for i in indices if not 0 <= i < self._count]
        if bad:
            raise IndexError(f"{self.path}: frame {bad[0]} out of range (the video has {self._count} frames)")
        wanted = sorted(set(indices))
        try:
            frames = self._seek_and_decode(wanted) if self._pts is not None else None
            if frames is None:
                frames = self._decode_sequentially(wanted)
        except DECODE_ERRORS as e:
            raise VideoDecodeError(f"{self.path}: decoding failed ({type(e).__name__}: {e})") from e
        return np.stack([frames[i] for i in indices])

    def _seek_and_decode(self, wanted: list[int]) -> dict[int, np.ndarray] | None:
        """Random access by timestamps; None when the file does not land where its index says (then decode all)."""
        frames: dict[int, np.ndarray] = {}
        decoder, position = None, None  # position: pts of the last decoded frame
        for index in wanted:
            target = self._pts[index]
            before = bisect.bisect_right(self._keyframes, target) - 1
            key = self._keyframes[before] if before >= 0 else None  # None: no key frame listed before the target
            if decoder is None or position >= target or (key is not None and key > position):
                self._container.seek(key if key is not None else target, stream=self._stream, backward=True)
                decoder, position = self._container.decode(self._stream), None
            frame = None
            for frame in decoder:
                if frame.pts is None:
                    return None
                if position is None and frame.pts > target:
                    return None  # the seek landed after the wanted frame
                position = frame.pts
                if frame.pts >= target:
                    break
            if frame is None or position is None or position < target:
                raise VideoDecodeError(f"{self.path}: frame {index} of {self._count} could not be decoded")
            if position != target:
                return None
            frames[index] = frame.to_ndarray(format="rgb24")
        return frames

    def _decode_sequentially(self, wanted: list[int]) -> dict[int, np.ndarray]:
        self._container.seek(0)
        frames, want, last = {}, set(wanted), wanted[-1]
        for i, frame in enumerate(self._container.decode(self._stream)):
            if i in want:
                frames[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                return frames
        raise VideoDecodeError(f"{self.path}: only {len(frames)} of the wanted frames decoded (the file holds "
                               f"{self._count} frame packets)")


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Open ``path``, return the frames at ``indices`` as ``(n, H, W, 3)`` uint8 RGB."""
    with VideoReader(path) as reader:
        return reader.get_frames(indices)
