"""Robustness evaluation sets of the paper's Table 1: ImageNet-C, ImageNet-A, ImageNet-R, ImageNet-Sketch.

As LM4VisualEncoding ``image_classification/main.py`` (``--inc_path``, ``--ina_path``, ``--inr_path``,
``--insk_path``):
- ImageNet-C: ``<root>/<corruption>/<severity 1-5>/<wnid>/`` for the 15 benchmark corruptions; 1000-way;
  transform = centre crop only (the images are already 224x224).
- ImageNet-A, ImageNet-R: ``<root>/<wnid>/``, 200 classes each; the model's 1000-way logits are restricted to the
  set's 200 wnids (in the model's class order), labels are 0..199, also when the folder holds fewer classes.
- ImageNet-Sketch: ``<root>/<wnid>/``, 1000-way, standard eval transform.
The model's class order is ImageNet-1k's sorted wnids (what ImageFolder gives for ``train/``), unless a training
class list is passed.
"""

from __future__ import annotations

import logging
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import ImageNetInfo

from image_cls.data.imagenet import DataPathError, ImageFolderSkipping

log = logging.getLogger(__name__)

# The 15 corruptions of the ImageNet-C benchmark (Hendrycks & Dietterich 2019), folder names.
IMAGENET_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)
ROBUSTNESS_SETS = ("imagenet-c", "imagenet-a", "imagenet-r", "imagenet-sketch")


def imagenet_1k_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in sorted order = the class order of a model trained on ``train/<wnid>/``."""
    return list(ImageNetInfo("imagenet-1k").label_names())


def imagenet_subset_wnids(name: str) -> list[str]:
    """The 200 wnids of ImageNet-A or ImageNet-R (timm's copies of the lists upstream hard-codes in main.py)."""
    files = {"imagenet-a": "imagenet_a_synsets.txt", "imagenet-r": "imagenet_r_synsets.txt"}
    if name not in files:
        raise ValueError(f"no class list for {name!r}; known: {sorted(files)}")
    return pkgutil.get_data("timm", f"data/_info/{files[name]}").decode().split()


@dataclass
class EvalSet:
    """One evaluation data set and how to score it.

    ``logit_indices`` (for 200-class subsets) selects and orders the model's logit columns so that column j is the
    set's label j; None means the set's labels already are the model's class indices.
    """

    name: str
    dataset: ImageFolderSkipping
    logit_indices: torch.Tensor | None = None
    corruption: str | None = None
    severity: int | None = None


def _class_to_idx(model_classes: Sequence[str] | None) -> dict[str, int]:
    classes = list(model_classes) if model_classes is not None else imagenet_1k_wnids()
    return {wnid: i for i, wnid in enumerate(classes)}


def imagenet_full_set(name: str, root: str | Path, transform: Callable,
                      model_classes: Sequence[str] | None = None) -> EvalSet:
    """A 1000-way set in ``root/<wnid>/`` (ImageNet-Sketch, or the ImageNet val folder): labels = model indices."""
    dataset = ImageFolderSkipping(root, transform=transform, class_to_idx=_class_to_idx(model_classes))
    return EvalSet(name, dataset)


def imagenet_subset_set(name: str, root: str | Path, transform: Callable,
                        model_classes: Sequence[str] | None = None) -> EvalSet:
    """ImageNet-A / -R in ``root/<wnid>/``, scored 200-way as the official code and Hendrycks' eval scripts do:
    the logits are restricted to all 200 wnids of the set (in the model's class order), label j = the folder's
    position among them. A folder with fewer classes still competes against all 200 (a warning counts the missing
    ones); scoring only the present classes would inflate the accuracy."""
    class_to_idx = _class_to_idx(model_classes)
    subset = imagenet_subset_wnids(name)
    lacking = [w for w in subset if w not in class_to_idx]
    if lacking:
        raise DataPathError(f"{name}: the model's classes lack {len(lacking)} of its 200 classes, e.g. {lacking[:3]} "
                            "(it is scored over ImageNet-1k outputs)")
    columns = sorted(subset, key=class_to_idx.__getitem__)
    column_of = {wnid: j for j, wnid in enumerate(columns)}
    dataset = ImageFolderSkipping(root, transform=transform)
    foreign = sorted(set(dataset.classes) - set(subset))
    if foreign:
        raise DataPathError(f"{name} path {root}: {len(foreign)} class folder(s) are not {name} classes, "
                            f"e.g. {foreign[:3]}")
    dataset = ImageFolderSkipping(root, transform=transform, class_to_idx=column_of)
    missing = len(subset) - len(dataset.classes)
    if missing:
        log.warning("%s %s: %d of its 200 classes have no folder; scored 200-way all the same (official rule)", name,
                    root, missing)
    indices = torch.tensor([class_to_idx[w] for w in columns], dtype=torch.long)
    return EvalSet(name, dataset, logit_indices=indices)


def imagenet_c_sets(root: str | Path, transform: Callable, model_classes: Sequence[str] | None = None,
                    corruptions: Sequence[str] = IMAGENET_C_CORRUPTIONS) -> list[EvalSet]:
    """One ``EvalSet`` per (corruption, severity) under ``root/<corruption>/<severity>/<wnid>/``.

    All requested corruptions x severities 1-5 must exist (a missing one is a ``DataPathError`` naming it).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataPathError(f"ImageNet-C path {root}: no such directory")
    missing = [f"{c}/{s}" for c in corruptions for s in IMAGENET_C_SEVERITIES if not (root / c / str(s)).is_dir()]
    if missing:
        raise DataPathError(f"ImageNet-C path {root}: missing {len(missing)} <corruption>/<severity> folder(s), "
                            f"e.g. {missing[:3]}")
    class_to_idx = _class_to_idx(model_classes)
    return [EvalSet(f"imagenet-c/{c}/{s}",
                    ImageFolderSkipping(root / c / str(s), transform=transform, class_to_idx=class_to_idx),
                    corruption=c, severity=s)
            for c in corruptions for s in IMAGENET_C_SEVERITIES]


def build_robustness_sets(name: str, root: str | Path, eval_transform: Callable, imagenet_c_transform: Callable,
                          model_classes: Sequence[str] | None = None) -> list[EvalSet]:
    """The evaluation set(s) for one of ``ROBUSTNESS_SETS`` found at ``root``."""
    if name == "imagenet-c":
        return imagenet_c_sets(root, imagenet_c_transform, model_classes)
    if name in ("imagenet-a", "imagenet-r"):
        return [imagenet_subset_set(name, root, eval_transform, model_classes)]
    if name == "imagenet-sketch":
        return [imagenet_full_set(name, root, eval_transform, model_classes)]
    raise ValueError(f"unknown robustness set {name!r}; expected one of {ROBUSTNESS_SETS}")
