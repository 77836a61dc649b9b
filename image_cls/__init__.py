"""DeiT ViT-T/S/B with and without a frozen LLM block (Pang et al., ICLR 2024, Table 1 and Tables 6, A-D)."""
