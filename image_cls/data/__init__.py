"""Data for image_cls: ImageNet (folders or tar), robustness sets, DeiT transforms, the demo's small data sets."""

from image_cls.data.build import TaskData, build_task_data, fixed_subset, model_classes, training_classes
from image_cls.data.imagenet import (
    DataPathError,
    ImageFolderSkipping,
    ImageTarDataset,
    SkipCounter,
    build_imagenet_dataset,
    build_train_val,
    resolve_layout,
)
from image_cls.data.robustness import (
    IMAGENET_C_CORRUPTIONS,
    ROBUSTNESS_SETS,
    EvalSet,
    build_robustness_sets,
    imagenet_1k_wnids,
    imagenet_c_sets,
    imagenet_full_set,
    imagenet_subset_set,
    imagenet_subset_wnids,
)
from image_cls.data.small import (
    ArrayImageDataset,
    SmallDataset,
    load_demo_dataset,
    load_digits,
    load_fashion_mnist,
    read_idx,
)
from image_cls.data.transforms import (
    build_eval_transform,
    build_imagenet_c_transform,
    build_mixup,
    build_train_sampler,
    build_train_transform,
    build_transform,
)

__all__ = [
    "DataPathError", "ImageFolderSkipping", "ImageTarDataset", "SkipCounter", "build_imagenet_dataset",
    "build_train_val", "resolve_layout", "IMAGENET_C_CORRUPTIONS", "ROBUSTNESS_SETS", "EvalSet",
    "build_robustness_sets", "imagenet_1k_wnids", "imagenet_c_sets", "imagenet_full_set", "imagenet_subset_set",
    "imagenet_subset_wnids",
    "ArrayImageDataset", "SmallDataset", "load_demo_dataset", "load_digits", "load_fashion_mnist", "read_idx",
    "build_eval_transform", "build_imagenet_c_transform", "build_mixup", "build_train_sampler",
    "build_train_transform", "build_transform",
    "TaskData", "build_task_data", "fixed_subset", "model_classes", "training_classes",
]
