"""ScanObjectNN h5 and ModelNet40 (text files + FPS-cache pickle) readers, and the batch sampling."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from pc_fixtures import MODELNET_CLASSES, write_modelnet_cache

from point_cloud.data import (
    DataPathError,
    ModelNet40,
    ScanObjectNN,
    build_dataset,
    eval_input,
    scale_and_translate,
    train_input,
    vote_logits,
)
from point_cloud.data.sampling import pool_indices, random_subset
from point_cloud.grouping import farthest_point_sample, fps


@pytest.mark.parametrize(("variant", "file"), [
    ("objectbg", "main_split/training_objectdataset.h5"),
    ("objectonly", "main_split_nobg/training_objectdataset.h5"),
    ("hardest", "main_split/training_objectdataset_augmentedrot_scale75.h5"),
])
def test_scanobjectnn_variants_read_their_files(scanobjectnn_root, variant, file):
    train = build_dataset(variant, scanobjectnn_root, "train")
    assert train.path == scanobjectnn_root / file and len(train) == 12
    with h5py.File(scanobjectnn_root / file) as f:
        stored, labels = np.asarray(f["data"]), np.asarray(f["label"])
    points, label = train[5]
    assert label == labels[5] and points.shape == (96, 3) and points.dtype == torch.float32
    order = np.lexsort(points.numpy().T)  # a training item is the stored cloud in a new point order
    np.testing.assert_array_equal(points.numpy()[order], stored[5][np.lexsort(stored[5].T)])
    assert not np.array_equal(points.numpy(), stored[5])
    test = ScanObjectNN(scanobjectnn_root / os.path.dirname(file), variant, "test")  # the split folder also works
    np.testing.assert_array_equal(test[1][0].numpy(), test.points[1])


def test_scanobjectnn_bad_files_name_the_file_and_key(tmp_path):
    folder = tmp_path / "main_split"
    folder.mkdir()
    with pytest.raises(DataPathError, match=f"file not found: {folder}/training_objectdataset.h5"):
        build_dataset("objectbg", tmp_path, "train")
    path = folder / "training_objectdataset.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("points", data=np.zeros((2, 16, 3), np.float32))
        f.create_dataset("label", data=np.zeros(2, np.int64))
    with pytest.raises(DataPathError, match=f"{path}: no 'data' dataset"):
        build_dataset("objectbg", tmp_path, "train")
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 16, 6), np.float32))
        f.create_dataset("label", data=np.zeros(2, np.int64))
    with pytest.raises(DataPathError, match=r"'data' has shape \(2, 16, 6\)"):
        build_dataset("objectbg", tmp_path, "train")
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 16, 3), np.float32))
        f.create_dataset("label", data=np.array([0, 15]))
    with pytest.raises(DataPathError, match=r"labels span \[0, 15\]"):
        build_dataset("objectbg", tmp_path, "train")
    with pytest.raises(DataPathError, match="data path not found"):
        build_dataset("objectbg", tmp_path / "missing", "train")


def test_modelnet_cache_is_built_like_point_berts(modelnet_root):
    train = ModelNet40(modelnet_root, "train", cache_points=128)
    cache = modelnet_root / "modelnet40_train_128pts_fps.dat"
    with open(cache, "rb") as f:
        points, labels = pickle.load(f)  # the plain format: [list of (n, 6) float32, list of (1,) int32]
    assert len(points) == len(labels) == 12 == len(train)
    assert all(p.shape == (128, 6) and p.dtype == np.float32 for p in points)
    assert all(lab.shape == (1,) and lab.dtype == np.int32 for lab in labels)
    assert [int(lab[0]) for lab in labels] == [c for c in range(3) for _ in range(4)]
    first = np.loadtxt(modelnet_root / "airplane" / "airplane_0001.txt", delimiter=",", dtype=np.float32)
    index = farthest_point_sample(torch.from_numpy(first)[None], 128, torch.Generator().manual_seed(0))[0]
    np.testing.assert_array_equal(points[0], first[index.numpy()])  # FPS from a seeded start, the rows as read
    rows = np.loadtxt(modelnet_root / "bed" / "bed_0002.txt", delimiter=",", dtype=np.float32)
    assert len({tuple(r) for r in points[9]}) == 128 and {tuple(r) for r in points[9]} <= {tuple(r) for r in rows}
    xyz, label = train[9]
    assert label == MODELNET_CLASSES.index("bed") and xyz.shape == (128, 3)
    centred = xyz.numpy() - xyz.numpy().mean(0)
    assert abs(xyz.numpy().mean(0)).max() < 1e-5 and np.linalg.norm(centred, axis=1).max() == pytest.approx(1, 1e-5)
    again = ModelNet40(modelnet_root, "train", cache_points=128)  # read back, not rebuilt
    np.testing.assert_array_equal(again.points[3], points[3])


def test_modelnet_reads_a_prewritten_cache(modelnet_root):
    path = write_modelnet_cache(modelnet_root, "test", 150)
    before = path.stat().st_mtime_ns
    test = ModelNet40(modelnet_root, "test", cache_points=150)
    assert path.stat().st_mtime_ns == before and len(test) == 6
    rows = np.loadtxt(modelnet_root / "bathtub" / "bathtub_0101.txt", delimiter=",", dtype=np.float32)[:150, :3]
    expected = rows - rows.mean(0)
    expected /= np.linalg.norm(expected, axis=1).max()
    np.testing.assert_allclose(test[2][0].numpy(), expected, atol=1e-6)  # test items keep the cache order


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_a_cache_with_foreign_globals_is_refused(modelnet_root):
    target = modelnet_root / "pwned"
    with open(modelnet_root / "modelnet40_test_150pts_fps.dat", "wb") as f:
        pickle.dump([[_Exploit(target)], []], f)
    with pytest.raises(DataPathError, match=r"refusing to load global '(posix|os|nt)\.system'"):
        ModelNet40(modelnet_root, "test", cache_points=150)
    assert not target.exists()


def test_stale_or_malformed_caches_are_errors(modelnet_root):
    path = write_modelnet_cache(modelnet_root, "test", 150)
    with open(path, "rb") as f:
        points, labels = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump([points[:-1], labels[:-1]], f)
    with pytest.raises(DataPathError, match="5 point sets and 5 labels, the split file lists 6"):
        ModelNet40(modelnet_root, "test", cache_points=150)
    labels[0] = np.array([2], np.int32)
    with open(path, "wb") as f:
        pickle.dump([points, labels], f)
    with pytest.raises(DataPathError, match="label of shape 0 .airplane_0101. is 2"):
        ModelNet40(modelnet_root, "test", cache_points=150)
    (modelnet_root / "modelnet40_shape_names.txt").unlink()
    with pytest.raises(DataPathError, match="modelnet40_shape_names.txt"):
        ModelNet40(modelnet_root, "test", cache_points=150)


def test_modelnet_too_few_points_for_the_cache(modelnet_root):
    with pytest.raises(DataPathError, match="200 points, fewer than the 8192 of the FPS cache"):
        ModelNet40(modelnet_root, "train")


def test_train_sample_is_an_fps_pool_subset_then_scaled_and_shifted():
    torch.manual_seed(0)
    points = torch.randn(1, 100, 3).expand(3, -1, -1).contiguous()
    pool = pool_indices(points, 80)
    assert torch.equal(pool, farthest_point_sample(points, 80))
    subset = random_subset(points, pool, 64, torch.Generator().manual_seed(1))
    assert torch.equal(subset[0], subset[2])  # the same positions for the whole batch, as upstream
    pooled = {tuple(p) for p in fps(points, 80)[0].tolist()}
    assert {tuple(p) for p in subset[0].tolist()} <= pooled
    out = scale_and_translate(subset, generator=torch.Generator().manual_seed(2))
    factors = (out[:, 1] - out[:, 0]) / (subset[:, 1] - subset[:, 0])
    shifts = out[:, 0] - subset[:, 0] * factors
    assert ((factors > 2 / 3 - 1e-4) & (factors < 1.5 + 1e-4)).all() and (shifts.abs() <= 0.2 + 1e-4).all()
    assert not torch.allclose(factors[0], factors[1])  # per cloud
    sample = train_input(points, 64, 80, torch.Generator().manual_seed(3))
    assert sample.shape == (3, 64, 3)
    assert torch.equal(pool_indices(points, 100)[0], torch.arange(100))  # pool of all points: no FPS needed


def test_test_sample_and_vote():
    points = torch.randn(2, 90, 3)
    assert torch.equal(eval_input(points, 64), fps(points, 64))
    assert eval_input(points, 90) is points
    with pytest.raises(ValueError, match="90 points cannot give 100"):
        eval_input(points, 100)

    def model(x):
        return torch.stack([x[..., 0].mean(1), x[..., 1].max(1).values], 1)

    voted = vote_logits(model, points, 64, 80, times=3, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    pool = farthest_point_sample(points, 80)
    manual = sum(model(scale_and_translate(random_subset(points, pool, 64, g), generator=g)) for _ in range(3)) / 3
    torch.testing.assert_close(voted, manual)
