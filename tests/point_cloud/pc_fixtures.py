"""Writers of point-cloud fixtures in the real on-disk formats: ScanObjectNN h5 (h5py), ModelNet40 text files and
its FPS-cache pickle, and checkpoints with Point-BERT's key layout (``torch.save``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import torch

from point_cloud.models import PointBertConfig, PointTransformer

# A small architecture for fast tests (the encoder's inner 128/256/512 widths are fixed upstream).
TINY = PointBertConfig(trans_dim=32, depth=2, num_heads=2, num_group=8, group_size=8, encoder_dims=32)
TINY_ARGS = ["--trans-dim", "32", "--depth", "2", "--num-heads", "2", "--num-group", "8", "--group-size", "8",
             "--encoder-dims", "32", "--npoints", "64", "--fps-pool", "80"]
MODELNET_CLASSES = ["airplane", "bathtub", "bed"]


def class_clouds(n: int, n_points: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clouds whose shape depends on the label (sphere / flat disc / line), so the classes are learnable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    clouds = rng.normal(size=(n, n_points, 3)).astype(np.float32)
    for i, label in enumerate(labels):
        clouds[i] *= np.array([1.0, 1.0 if label % 3 != 2 else 0.05, 1.0 if label % 3 == 0 else 0.05], np.float32)
    return clouds, labels


def write_scanobjectnn(root: Path, n_train: int = 12, n_test: int = 6, n_points: int = 96) -> Path:
    """All three ScanObjectNN variants under ``root`` (``main_split/``, ``main_split_nobg/``), h5 with the official
    keys ``data`` (N, P, 3) float32, ``label`` (N,) and ``mask`` (N, P)."""
    files = {"main_split": ["{}_objectdataset.h5", "{}_objectdataset_augmentedrot_scale75.h5"],
             "main_split_nobg": ["{}_objectdataset.h5"]}
    for seed, (folder, patterns) in enumerate(files.items()):
        for k, pattern in enumerate(patterns):
            for split, n in (("training", n_train), ("test", n_test)):
                data, labels = class_clouds(n, n_points, 3, seed=100 * seed + 10 * k + (split == "test"))
                path = root / folder / pattern.format(split)
                path.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(path, "w") as f:
                    f.create_dataset("data", data=data)
                    f.create_dataset("label", data=labels.astype(np.int64))
                    f.create_dataset("mask", data=np.zeros((n, n_points), np.int32))
    return root


def write_modelnet(root: Path, n_train_per_class: int = 4, n_test_per_class: int = 2, n_points: int = 200) -> Path:
    """``modelnet40_normal_resampled``-style folder: names, split lists and ``<class>/<id>.txt`` x,y,z,nx,ny,nz."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET_CLASSES) + "\n")
    for split, per_class, offset in (("train", n_train_per_class, 0), ("test", n_test_per_class, 100)):
        ids = []
        for c, name in enumerate(MODELNET_CLASSES):
            clouds, _ = class_clouds(per_class, n_points, 3, seed=c + offset)
            for i in range(per_class):
                shape_id = f"{name}_{offset + i + 1:04d}"
                xyz = clouds[i] * (c + 1) + 0.3 * c  # not unit-sphere normalised, not centred
                normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
                (root / name).mkdir(exist_ok=True)
                np.savetxt(root / name / f"{shape_id}.txt", np.concatenate([xyz, normals], 1), fmt="%.6f",
                           delimiter=",")
                ids.append(shape_id)
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_modelnet_cache(root: Path, split: str, n_points: int) -> Path:
    """The FPS cache pickle as Point-BERT's loader writes it (first ``n_points`` rows of each file stand in for
    its FPS): ``pickle.dump([list of (n, 6) float32, list of np.array([cls]).astype(np.int32)], f)``."""
    ids = (root / f"modelnet40_{split}.txt").read_text().split()
    points, labels = [], []
    for shape_id in ids:
        name = shape_id.rsplit("_", 1)[0]
        rows = np.loadtxt(root / name / f"{shape_id}.txt", delimiter=",").astype(np.float32)
        points.append(rows[:n_points])
        labels.append(np.array([MODELNET_CLASSES.index(name)]).astype(np.int32))
    path = root / f"modelnet40_{split}_{n_points}pts_fps.dat"
    with open(path, "wb") as f:
        pickle.dump([points, labels], f)
    return path


def random_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor redrawn (so a loaded value can be traced to its source)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


def write_point_bert_pretrained(path: Path, config: PointBertConfig = TINY, seed: int = 0,
                                extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A ``Point-BERT.pth`` as ``runner_BERT_pretrain`` saves ``Point_BERT`` from DataParallel: ``base_model`` with
    ``module.`` keys, ``transformer_q`` / ``transformer_k`` (MaskTransformer: + mask_token, lm_head, cls_head),
    ``dvae``, the MoCo ``queue``. Returns the fine-tuning tensors it holds, by fine-tuning key."""
    body = {k: v for k, v in random_state(PointTransformer(config), seed).items()
            if not k.startswith("cls_head_finetune.")}
    g = torch.Generator().manual_seed(seed + 1)
    dim = config.trans_dim
    heads = {"mask_token": torch.randn(1, 1, dim, generator=g), "lm_head.weight": torch.randn(8192, dim, generator=g),
             "lm_head.bias": torch.zeros(8192), "cls_head.0.weight": torch.randn(256, dim, generator=g),
             "cls_head.0.bias": torch.zeros(256), "cls_head.2.weight": torch.randn(256, 256, generator=g),
             "cls_head.2.bias": torch.zeros(256)}
    state = {}
    for prefix in ("transformer_q.", "transformer_k."):
        state.update({prefix + k: v.clone() + (prefix == "transformer_k.") for k, v in {**body, **heads}.items()})
    state.update({"dvae.encoder.first_conv.0.weight": torch.randn(128, 3, 1, generator=g),
                  "dvae.dgcnn_1.input_trans.weight": torch.randn(128, 256, 1, generator=g),
                  "dvae.codebook": torch.randn(64, 256, generator=g),
                  "queue": torch.randn(256, 64, generator=g), "queue_ptr": torch.zeros(1, dtype=torch.long)})
    state.update(extra or {})
    torch.save({"base_model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {"state": {}},
                "epoch": 299, "metrics": {"acc": 0.0}, "best_metrics": {"acc": 0.0}}, path)
    return body


def write_finetuned(path: Path, state: dict[str, torch.Tensor], prefix: str = "module.") -> Path:
    """A fine-tuned checkpoint as Point-BERT's ``builder.save_checkpoint`` writes it."""
    torch.save({"base_model": {prefix + k: v for k, v in state.items()}, "optimizer": {"state": {}},
                "epoch": 120, "metrics": {"acc": 88.1}, "best_metrics": {"acc": 88.1}}, path)
    return path
