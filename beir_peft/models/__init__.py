"""BEIR-facing retriever classes and the loaders that rebuild them from saved folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import FOLDER_METADATA, WEIGHTS_NAME, read_weights, register_loader
from .base import PASSAGE, QUERY, DenseRetriever, passage_text
from .colbert import COLBERT_METHODS, PT2ColBERT
from .configs import ColBERTConfig, LoRAOptions, TunedConfig
from .ddr import DDR
from .tuned import METHODS, PT2DPR, TunedRetriever, build_retriever


@register_loader(*METHODS)
def _load_tuned(path: Path, config: dict[str, Any]) -> TunedRetriever:
    fields = {k: v for k, v in config.items() if k not in FOLDER_METADATA}
    tuned = TunedConfig.from_dict(fields, where=str(path / "config.json"))
    # The saved weights replace the prefix, so skip computing a text initialisation for it.
    skeleton = tuned.without_text_init()
    classes = {"pt2-dpr": PT2DPR, "ddr": DDR}
    retriever = (
        classes[tuned.method](config=skeleton) if tuned.method in classes else TunedRetriever(skeleton)
    )
    retriever.config = tuned
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    if isinstance(tuned, LoRAOptions) and tuned.merge_lora:
        retriever.merge_lora()
    return retriever


@register_loader(*COLBERT_METHODS)
def _load_colbert(path: Path, config: dict[str, Any]) -> PT2ColBERT:
    fields = {k: v for k, v in config.items() if k not in FOLDER_METADATA}
    colbert = ColBERTConfig.from_dict(fields, where=str(path / "config.json"))
    # The saved weights replace the prefix and the linear layer: skip the text initialisation.
    retriever = PT2ColBERT(config=colbert.without_text_init())
    retriever.config = colbert
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    return retriever


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
    "passage_text",
]
