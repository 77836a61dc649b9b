"""VectorNet and mmTransformer, each with the frozen-LLM adapter on its agent and lane tokens."""

from .mmtransformer import MMTransformer
from .vectornet import VectorNet

__all__ = ["MMTransformer", "VectorNet"]
