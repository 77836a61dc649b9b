"""SQA3D (ScanQA + auxiliary situation task) with and without the frozen LLM block (paper Table 5b, Table E)."""
