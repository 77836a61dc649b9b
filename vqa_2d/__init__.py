"""2D VQA (VQAv2) and image-text retrieval (Flickr30k) with METER ± a frozen LLM block (paper Table 5a)."""
