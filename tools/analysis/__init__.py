"""Information-filtering analysis (paper §6): token activations per stage, CLS attention, pseudo-mask mIoU."""

from tools.analysis.layouts import GroupCentres, PatchGrid, TubeletGrid
from tools.analysis.maps import activation_maps, build_spec, capture_tokens, maps_from_capture
from tools.analysis.measures import MEASURES, frequency, magnitude, minmax_normalise, token_activation
from tools.analysis.overlay import save_overlay_grid, save_point_grid, save_video_grid
from tools.analysis.pseudo_mask import THRESHOLDS, best_threshold_iou, downsample_mask, pseudo_mask_miou
from tools.analysis.spec import AnalysisSpec, spec_from_parts, video_spec, vit_spec

__all__ = [
    "MEASURES", "THRESHOLDS", "AnalysisSpec", "GroupCentres", "PatchGrid", "TubeletGrid", "activation_maps",
    "best_threshold_iou", "build_spec", "capture_tokens", "downsample_mask", "frequency", "magnitude",
    "maps_from_capture", "minmax_normalise", "pseudo_mask_miou", "save_overlay_grid", "save_point_grid",
    "save_video_grid", "spec_from_parts", "token_activation", "video_spec", "vit_spec",
]
