"""ModelNet40 (``modelnet40_normal_resampled``) with Point-BERT's FPS cache (``datasets/ModelNetDataset.py``).

    <root>/modelnet40_shape_names.txt               40 class names, one a line (label = line number)
    <root>/modelnet40_{train,test}.txt              shape ids, e.g. ``airplane_0001`` (class = id minus ``_NNNN``)
    <root>/<class>/<shape id>.txt                   rows ``x,y,z,nx,ny,nz`` (10,000 of them)
    <root>/modelnet40_{train,test}_8192pts_fps.dat  cache: pickle of [list of (8192, 6) float32 arrays,
                                                    list of (1,) int32 label arrays], in split-file order

The cache is what Point-BERT distributes and what its loader writes on first use (farthest point sampling of
each shape to 8192 points from a random start). Here it is built the same way when absent (start point from a
seeded generator, so the file is reproducible), written atomically by one process. It is read with an
unpickler that can only rebuild numpy arrays: any other global in the file is refused, so a tampered cache
cannot run code. Items are normalised to the unit sphere (``pc_normalize``) and keep xyz only.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from point_cloud.data.errors import DataPathError
from point_cloud.grouping import farthest_point_sample

log = logging.getLogger(__name__)

CACHE_POINTS = 8192
PICKLE_PROTOCOL = 4  # what Point-BERT's pickle.dump writes under Python 3.8+

# The only globals a cache may reference: numpy's array/dtype reconstruction (numpy 1.x and 2.x module paths),
# and protocol 2's way of spelling bytes (``_codecs.encode``).
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, lists and plain values and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' (only numpy arrays are allowed)")


def load_array_pickle(path: str | os.PathLike):
    """Unpickle ``path`` with ``ArrayOnlyUnpickler`` (``latin1`` decoding, as numpy needs for Python 2 files)."""
    with open(path, "rb") as f:
        return ArrayOnlyUnpickler(f, encoding="latin1").load()


def pc_normalize(pc: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale so the farthest point is at distance 1."""
    pc = pc - pc.mean(axis=0)
    scale = np.sqrt((pc ** 2).sum(axis=1)).max()
    return pc / scale if scale > 0 else pc


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataPathError(f"ModelNet40 file not found: {path}")
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataPathError(f"{path} is empty")
    return lines


def read_shape_list(root: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(shape id, label)] of ``split``) from the two index files."""
    if split not in ("train", "test"):
        raise DataPathError(f"unknown split {split!r} (train or test)")
    if not root.is_dir():
        raise DataPathError(f"ModelNet40 folder not found: {root}")
    classes = _read_lines(root / "modelnet40_shape_names.txt")
    index = {name: i for i, name in enumerate(classes)}
    shapes = []
    split_file = root / f"modelnet40_{split}.txt"
    for shape_id in _read_lines(split_file):
        class_name = shape_id.rsplit("_", 1)[0]
        if class_name not in index:
            raise DataPathError(f"{split_file}: shape '{shape_id}' has class '{class_name}', not in "
                                "modelnet40_shape_names.txt")
        shapes.append((shape_id, index[class_name]))
    return classes, shapes


def read_shape_txt(path: Path) -> np.ndarray:
    """(P, 6) float32 ``x,y,z,nx,ny,nz`` rows of one shape file."""
    if not path.is_file():
        raise DataPathError(f"ModelNet40 shape file not found: {path}")
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise DataPathError(f"{path}: not comma-separated numbers ({e})") from None
    if rows.shape[1] != 6:
        raise DataPathError(f"{path}: {rows.shape[1]} columns, expected 6 (x,y,z,nx,ny,nz)")
    return rows


def cache_path(root: Path, split: str, n_points: int = CACHE_POINTS) -> Path:
    """``<root>/modelnet40_<split>_<n>pts_fps.dat`` (Point-BERT's name)."""
    return root / f"modelnet40_{split}_{n_points}pts_fps.dat"


def build_cache(root: Path, split: str, n_points: int = CACHE_POINTS, seed: int = 0) -> Path:
    """FPS every shape of ``split`` to ``n_points`` and write the cache pickle (atomically); returns its path."""
    _, shapes = read_shape_list(root, split)
    generator = torch.Generator().manual_seed(seed)
    points, labels = [], []
    for shape_id, label in shapes:
        file = root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt"
        rows = read_shape_txt(file)
        if rows.shape[0] < n_points:
            raise DataPathError(f"{file}: {rows.shape[0]} points, fewer than the {n_points} of the FPS cache")
        index = farthest_point_sample(torch.from_numpy(rows)[None], n_points, generator)[0].numpy()
        points.append(rows[index])
        labels.append(np.array([label], dtype=np.int32))
    path = cache_path(root, split, n_points)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump([points, labels], f, protocol=PICKLE_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d shapes x %d points)", path, len(points), n_points)
    return path


def read_cache(path: Path, n_shapes: int, n_points: int = CACHE_POINTS) -> tuple[list[np.ndarray], np.ndarray]:
    """(list of (n_points, C>=3) float32 arrays, labels (n_shapes,) int64) from a cache pickle, checked."""
    try:
        data = load_array_pickle(path)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as e:
        raise DataPathError(f"{path}: not a ModelNet FPS cache ({type(e).__name__}: {e})") from None
    if not (isinstance(data, (list, tuple)) and len(data) == 2 and all(isinstance(d, list) for d in data)):
        raise DataPathError(f"{path}: expected a pickled [list of point arrays, list of label arrays]")
    points, labels = data
    if len(points) != n_shapes or len(labels) != n_shapes:
        raise DataPathError(f"{path}: {len(points)} point sets and {len(labels)} labels, the split file lists "
                            f"{n_shapes} shapes (delete the cache to rebuild it)")
    for i, (p, lab) in enumerate(zip(points, labels)):
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.shape[0] != n_points or p.shape[1] < 3:
            raise DataPathError(f"{path}: shape {i} is {getattr(p, 'shape', type(p).__name__)}, expected "
                                f"({n_points}, 6)")
        if not isinstance(lab, np.ndarray) or lab.size != 1 or not np.issubdtype(lab.dtype, np.integer):
            raise DataPathError(f"{path}: label {i} is {lab!r}, expected a one-element integer array")
    return points, np.array([int(lab.reshape(-1)[0]) for lab in labels], dtype=np.int64)


class ModelNet40(Dataset):
    """One ModelNet40 split from the FPS cache (built when absent): items ``(points (8192, 3) tensor, label)``.

    Args:
        root: the ``modelnet40_normal_resampled`` folder.
        split: ``train`` (points shuffled per item) or ``test``.
        cache_points: points per shape in the cache (8192 in every Point-BERT config).
        build_missing: build an absent cache (only one process should; others wait and pass False).
    """

    def __init__(self, root: str | os.PathLike, split: str, cache_points: int = CACHE_POINTS,
                 build_missing: bool = True, seed: int = 0):
        self.root, self.split = Path(root), split
        self.classes, shapes = read_shape_list(self.root, split)
        self.cache = cache_path(self.root, split, cache_points)
        if not self.cache.is_file():
            if not build_missing:
                raise DataPathError(f"ModelNet40 cache not found: {self.cache}")
            log.info("building %s from the shape files (first use only)", self.cache)
            build_cache(self.root, split, cache_points, seed)
        self.points, self.labels = read_cache(self.cache, len(shapes), cache_points)
        expected = np.array([label for _, label in shapes])
        if not np.array_equal(self.labels, expected):
            first = int(np.flatnonzero(self.labels != expected)[0])
            raise DataPathError(f"{self.cache}: label of shape {first} ({shapes[first][0]}) is {self.labels[first]}, "
                                f"the split file says {expected[first]} (stale cache? delete it to rebuild)")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        points = torch.from_numpy(pc_normalize(self.points[index][:, :3].astype(np.float32)).astype(np.float32))
        if self.split == "train":
            points = points[torch.randperm(points.shape[0])]
        return points, int(self.labels[index])
