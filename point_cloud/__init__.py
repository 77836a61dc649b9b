"""Point-BERT (ScanObjectNN, ModelNet40) with and without a frozen LLM block; see point_cloud/README.md."""
