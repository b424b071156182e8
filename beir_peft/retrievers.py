"""Turn a model spec (the CLI's ``--model``, a GPL miner, a comparison entry) into what a search runs on.

``"bm25"`` (:data:`BM25_MODEL`) is the lexical baseline, a :class:`~beir_peft.search.bm25.BM25Search`
(a BEIR search class rather than a dense model; ``evaluate_retriever`` and ``make_search`` accept
both); anything else is a saved beir_peft folder or a sentence-transformers model, loaded by
:func:`beir_peft.models.loading.load_model`. The choice lives here, above both ``search`` and
``models``, so that neither has to know the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models import loading

#: the model spec of the lexical baseline (:class:`beir_peft.search.bm25.BM25Search`)
BM25_MODEL = "bm25"


def is_bm25(spec: str | None) -> bool:
    """``spec`` names the BM25 baseline (and no folder of that name exists)."""
    return spec == BM25_MODEL and not Path(spec).exists()


def load_retriever(name_or_path: str | None = None, device: str | None = None, dtype: str = "float32") -> Any:
    """The BM25 baseline for ``"bm25"``, else :func:`~beir_peft.models.loading.load_model`'s model
    (``dtype``: its encoding dtype; BM25 has no encoder and takes only ``"float32"``)."""
    if is_bm25(name_or_path):
        from .search.bm25 import BM25Search

        if dtype != "float32":
            raise ConfigError(f"dtype {dtype!r}: bm25 is lexical, it has no encoder to run in another dtype")
        return BM25Search()
    return loading.load_model(name_or_path, device=device, dtype=dtype)
