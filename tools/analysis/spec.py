"""Per-task "analysis specs" (which modules are the stages, which attention rows to read, how tokens map to
positions): defined in ``common.analysis`` (a task's ``analysis_spec`` builds one importing only ``common``),
re-exported here."""

from common.analysis import (
    AnalysisSpec,
    AttentionSite,
    adapter_parts,
    find_adapter,
    spec_from_parts,
    video_spec,
    vit_spec,
)

__all__ = ["AnalysisSpec", "AttentionSite", "adapter_parts", "find_adapter", "spec_from_parts", "video_spec",
           "vit_spec"]
