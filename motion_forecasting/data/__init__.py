"""Argoverse 1.1 / 2 readers, the vectoriser, datasets and the memory-mapped preprocessing cache."""
