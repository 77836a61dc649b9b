"""Token -> position mappings ("layouts") for drawing per-token values: defined in ``common.analysis`` (so a task
builds them importing only ``common``), re-exported here."""

from common.analysis import GroupCentres, Layout, PatchGrid, TubeletGrid

__all__ = ["GroupCentres", "Layout", "PatchGrid", "TubeletGrid"]
