"""Small grey-image data sets for the CPU demo: Fashion-MNIST from its IDX files, sklearn digits as the fallback.

Fashion-MNIST (Xiao et al. 2017) ships as four gzip'd IDX files (Debian ``dataset-fashion-mnist`` installs them in
``/usr/share/datasets/fashion-mnist/``). IDX: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions,
then each dimension as a big-endian uint32, then the data in C order.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_IDX_UINT8 = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip'd if it ends in .gz) as a uint8 array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4].hex()})")
    if data[2] != _IDX_UINT8:
        raise ValueError(f"{path}: IDX type code 0x{data[2]:02x} is not uint8")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - start != expected:
        raise ValueError(f"{path}: {len(data) - start} data bytes, shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)


@dataclass
class SmallDataset:
    """Images (N, H, W) uint8 and labels (N,) int64 for train and test, plus where they came from."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str


def load_fashion_mnist(root: str | Path = FASHION_MNIST_DIR) -> SmallDataset:
    """Fashion-MNIST (60k train / 10k test, 28x28, 10 classes) from the IDX files in ``root``."""
    root = Path(root)
    arrays = {}
    for split, (images_file, labels_file) in FASHION_MNIST_FILES.items():
        images, labels = read_idx(root / images_file), read_idx(root / labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
        arrays[split] = (images, labels.astype(np.int64))
    return SmallDataset("fashion-mnist", *arrays["train"], *arrays["test"], FASHION_MNIST_CLASSES, str(root))


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> SmallDataset:
    """scikit-learn's bundled digits (1797 images, 8x8, 10 classes), split at random into train / test."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # stored as 0..16
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    classes = tuple(str(d) for d in range(10))
    return SmallDataset("digits", images[train], labels[train], images[test], labels[test], classes, "sklearn")


def load_demo_dataset(fashion_mnist_root: str | Path = FASHION_MNIST_DIR) -> SmallDataset:
    """Fashion-MNIST when its files are present, otherwise sklearn digits."""
    if all((Path(fashion_mnist_root) / f).is_file() for pair in FASHION_MNIST_FILES.values() for f in pair):
        return load_fashion_mnist(fashion_mnist_root)
    return load_digits()


class ArrayImageDataset(Dataset):
    """(N, H, W) uint8 images as normalised float tensors (1, size, size), with int labels.

    ``mean``/``std`` default to the statistics of ``images``; pass the training set's for the test set.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int | None = None,
                 mean: float | None = None, std: float | None = None) -> None:
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)  # a writable copy
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        scaled = self.images.float() / 255.0
        self.mean = float(scaled.mean()) if mean is None else mean
        self.std = float(scaled.std()) if std is None else std
        self.size = size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = (self.images[index].float() / 255.0 - self.mean) / self.std
        if self.size is not None and image.shape[-1] != self.size:
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        return image, int(self.labels[index])
