"""Data for point_cloud: ScanObjectNN (h5) and ModelNet40 (txt + FPS cache) readers, batch sampling on device."""

from point_cloud.data.build import DATASETS, build_dataset, num_classes
from point_cloud.data.errors import DataPathError
from point_cloud.data.modelnet import ArrayOnlyUnpickler, ModelNet40, build_cache, load_array_pickle, pc_normalize
from point_cloud.data.sampling import (
    FPS_POOL,
    eval_input,
    fps_pool_size,
    scale_and_translate,
    train_input,
    vote_logits,
)
from point_cloud.data.scanobjectnn import ScanObjectNN, read_scanobjectnn_h5, scanobjectnn_file

__all__ = [
    "DATASETS", "FPS_POOL", "ArrayOnlyUnpickler", "DataPathError", "ModelNet40", "ScanObjectNN", "build_cache",
    "build_dataset", "eval_input", "fps_pool_size", "load_array_pickle", "num_classes", "pc_normalize",
    "read_scanobjectnn_h5", "scale_and_translate", "scanobjectnn_file", "train_input", "vote_logits",
]
