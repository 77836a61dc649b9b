"""VideoMAE ViT-S/B fine-tuning on Something-Something-v2 with and without a frozen LLM block (Pang et al., ICLR
2024, Table 3 and Table B); see action_recognition/README.md."""
