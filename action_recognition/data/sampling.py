"""Which frames of a video make a clip: VideoMAE's TSN-style segment sampling for SSv2 (``ssv2.py``
``SSVideoClsDataset.loadvideo_decord``), in both modes.

Train (one random frame per segment), with ``n`` frames in the video and ``S`` segments (= frames per clip)::

    d = n // S
    d > 0:   [s * d + randint(d) for s in range(S)]
    n > S:   sorted(randint(n, size=S))          (unreachable: n > S implies d > 0; kept as upstream has it)
    else:    [0] * S

Test (two temporal views from one decode)::

    tick = n / S
    idx = sorted([int(tick / 2 + tick * s) for s in range(S)] + [int(tick * s) for s in range(S)])
    view c (c = 0, 1) = idx[c::2]      -> c = 0: the segment starts, c = 1: the segment midpoints

(upstream pads ``idx`` with its last entry up to ``S * test_num_segment`` before sorting; with two views there
is nothing to pad, and more than two views would give clips longer than ``S``, so only 1 or 2 are allowed here.)
"""

from __future__ import annotations

import numpy as np

MAX_TEST_SEGMENTS = 2


def train_frame_indices(num_video_frames: int, num_segment: int, rng: np.random.RandomState | None = None) -> list[int]:
    """VideoMAE's training indices: one uniformly random frame in each of ``num_segment`` equal segments.

    ``rng``: a ``numpy.random.RandomState`` (default: numpy's global one, as upstream; the data loader seeds it
    per worker).
    """
    if num_video_frames < 1 or num_segment < 1:
        raise ValueError(f"need >= 1 frame and segment, got {num_video_frames} frames, {num_segment} segments")
    rng = np.random if rng is None else rng
    average_duration = num_video_frames // num_segment
    if average_duration > 0:
        offsets = rng.randint(average_duration, size=num_segment)
        return [int(v) for v in np.multiply(list(range(num_segment)), average_duration) + offsets]
    if num_video_frames > num_segment:
        return [int(v) for v in np.sort(rng.randint(num_video_frames, size=num_segment))]
    return [0] * num_segment


def multiview_frame_indices(num_video_frames: int, num_segment: int, test_num_segment: int = 2) -> list[int]:
    """VideoMAE's test indices: the sorted union of segment midpoints and segment starts (``2 * num_segment``)."""
    if num_video_frames < 1 or num_segment < 1:
        raise ValueError(f"need >= 1 frame and segment, got {num_video_frames} frames, {num_segment} segments")
    if not 1 <= test_num_segment <= MAX_TEST_SEGMENTS:
        raise ValueError(f"SSv2 test sampling yields 1 or 2 temporal views, not {test_num_segment}")
    tick = num_video_frames / float(num_segment)
    index = [int(tick / 2.0 + tick * s) for s in range(num_segment)] + [int(tick * s) for s in range(num_segment)]
    while len(index) < num_segment * test_num_segment:  # never runs for 1 or 2 views; upstream's padding rule
        index.append(index[-1])
    return sorted(index)


def temporal_view(test_index: list[int], chunk: int) -> list[int]:
    """Frames of temporal view ``chunk`` (0: segment starts, 1: midpoints) from ``multiview_frame_indices``' list."""
    return test_index[chunk::2]
