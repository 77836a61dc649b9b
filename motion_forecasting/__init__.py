"""Motion forecasting: VectorNet and mmTransformer ± a frozen LLM block on Argoverse 1.1 and Argoverse 2."""
