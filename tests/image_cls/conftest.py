"""Fixtures for image_cls: a tiny LLaMA checkpoint in Meta's format and ImageNet-layout trees (folders and tars)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from image_fixtures import (
    TINY_LLAMA_HIDDEN,
    TINY_LLAMA_PARAMS,
    write_imagenet_folder,
    write_meta_llama,
)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, dim-64, 4-head LLaMA checkpoint in Meta's format."""
    return write_meta_llama(tmp_path_factory.mktemp("tiny_llama"), TINY_LLAMA_PARAMS, TINY_LLAMA_HIDDEN)


@pytest.fixture(scope="session")
def imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/<wnid>/`` (4 images per class + 2 corrupt files) and ``val/<wnid>/`` (2 per class)."""
    return write_imagenet_folder(tmp_path_factory.mktemp("imagenet_folder"))


@pytest.fixture(scope="session")
def imagenet_tar(tmp_path_factory: pytest.TempPathFactory, imagenet_folder: Path) -> Path:
    """``train.tar`` / ``val.tar`` of the folder tree (members ``train/<wnid>/<file>``, plus directory entries
    and a stray top-level file that the reader must ignore)."""
    root = tmp_path_factory.mktemp("imagenet_tar")
    for split in ("train", "val"):
        with tarfile.open(root / f"{split}.tar", "w") as tar:
            tar.add(imagenet_folder / split, arcname=split)
            readme = root / "README.txt"
            readme.write_text("not an image")
            tar.add(readme, arcname=f"{split}/README.txt")
    return root
