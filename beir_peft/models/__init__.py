"""BEIR-facing retriever classes; :func:`load` rebuilds any of them from a saved folder."""

from __future__ import annotations

from .base import PASSAGE, QUERY, DenseRetriever, passage_text
from .colbert import COLBERT_METHODS, PT2ColBERT
from .configs import ColBERTConfig, TunedConfig
from .ddr import DDR
from .loading import load
from .tuned import METHODS, PT2DPR, TunedRetriever, build_retriever

__all__ = [
    "COLBERT_METHODS",
    "DDR",
    "ColBERTConfig",
    "PT2ColBERT",
    "METHODS",
    "PASSAGE",
    "PT2DPR",
    "QUERY",
    "DenseRetriever",
    "TunedConfig",
    "TunedRetriever",
    "build_retriever",
    "load",
    "passage_text",
]
