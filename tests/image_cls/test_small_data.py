"""Fashion-MNIST's IDX files (the real ones, and ones written here in the IDX format) and the digits fallback."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from image_cls.data import ArrayImageDataset, load_demo_dataset, load_fashion_mnist, read_idx
from image_cls.data.small import FASHION_MNIST_DIR, FASHION_MNIST_FILES

HAVE_FASHION_MNIST = all((FASHION_MNIST_DIR / f).is_file() for pair in FASHION_MNIST_FILES.values() for f in pair)


def write_idx(path, array: np.ndarray, type_code: int = 0x08) -> None:
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root, n_train: int = 6, n_test: int = 4) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_file, labels_file = FASHION_MNIST_FILES[split]
        write_idx(root / images_file, rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / labels_file, np.arange(n) % 10)


def test_idx_reader_on_written_files(tmp_path):
    write_fashion_mnist(tmp_path)
    data = load_fashion_mnist(tmp_path)
    assert data.train_images.shape == (6, 28, 28) and data.test_labels.tolist() == [0, 1, 2, 3]
    assert data.classes[9] == "Ankle boot" and data.name == "fashion-mnist"
    array = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)


@pytest.mark.parametrize("corrupt,message", [
    (lambda b: b"\x01" + b[1:], "bad magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "type code 0x0d"),
    (lambda b: b[:-5], "data bytes"),
])
def test_idx_reader_errors(tmp_path, corrupt, message):
    write_idx(tmp_path / "x.gz", np.zeros((2, 3), dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    (tmp_path / "y").write_bytes(corrupt(raw))
    with pytest.raises(ValueError, match=message):
        read_idx(tmp_path / "y")


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    data = load_demo_dataset()
    assert data.name == "fashion-mnist" and data.source == str(FASHION_MNIST_DIR)
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def test_digits_fallback_and_array_dataset(tmp_path):
    data = load_demo_dataset(tmp_path / "no-fashion-mnist")
    assert data.name == "digits" and data.train_images.shape[1:] == (8, 8)
    assert len(data.train_images) + len(data.test_images) == 1797 and data.train_images.max() == 255
    train = ArrayImageDataset(data.train_images, data.train_labels)
    test = ArrayImageDataset(data.test_images, data.test_labels, size=28, mean=train.mean, std=train.std)
    stacked = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(float(stacked.mean())) < 1e-4 and abs(float(stacked.std()) - 1) < 1e-2
    image, label = test[0]
    assert image.shape == (1, 28, 28) and label == int(data.test_labels[0])
