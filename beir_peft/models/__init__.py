"""BEIR-facing retriever classes and the loaders that rebuild them from saved folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..artifacts import WEIGHTS_NAME, read_weights, register_loader
from .base import PASSAGE, QUERY, DenseRetriever, passage_text
from .tuned import METHODS, PT2DPR, TunedConfig, TunedRetriever, build_retriever


@register_loader(*METHODS)
def _load_tuned(path: Path, config: dict[str, Any]) -> TunedRetriever:
    names = {f.name for f in dataclasses.fields(TunedConfig)}
    tuned = TunedConfig.from_dict(
        {k: v for k, v in config.items() if k in names}, where=str(path / "config.json")
    )
    # The saved weights replace the prefix, so skip computing a text initialisation for it.
    retriever_cls = PT2DPR if tuned.method == "pt2-dpr" else TunedRetriever
    retriever = (
        retriever_cls(config=dataclasses.replace(tuned, init="random"))
        if tuned.method == "pt2-dpr"
        else retriever_cls(dataclasses.replace(tuned, init="random"))
    )
    retriever.config = tuned
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    return retriever


__all__ = [
    "PASSAGE",
    "QUERY",
    "DenseRetriever",
    "METHODS",
    "PT2DPR",
    "TunedConfig",
    "TunedRetriever",
    "build_retriever",
    "passage_text",
]
