"""Dense searchers over BEIR corpora: exact brute force, or a faiss index (flat or HNSW).

Late-interaction models (PT2-ColBERT) are searched by :class:`MaxSimSearch` (exact MaxSim).

:func:`make_search` turns the CLI's ``--search`` choice into a BEIR ``BaseSearch``. faiss is only
imported when a faiss searcher is asked for.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .corpus import model_description, sanitize_corpus, sanitize_doc
from .exact import ExactSearch
from .maxsim import MaxSimSearch

if TYPE_CHECKING:
    from beir.retrieval.search import BaseSearch

    from .faiss_search import FaissSearch

logger = logging.getLogger(__name__)

SEARCH_CHOICES = ("exact", "faiss-flat", "faiss-hnsw")

__all__ = [
    "SEARCH_CHOICES",
    "ExactSearch",
    "FaissSearch",
    "MaxSimSearch",
    "make_search",
    "model_description",
    "sanitize_corpus",
    "sanitize_doc",
]


def __getattr__(name: str) -> Any:
    if name == "FaissSearch":
        from .faiss_search import FaissSearch

        return FaissSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_search(
    model: Any,
    search: str = "exact",
    batch_size: int = 128,
    index_dir: str | os.PathLike | None = None,
    show_progress_bar: bool = True,
    **kwargs: Any,
) -> BaseSearch:
    """The BEIR searcher named ``search`` (one of :data:`SEARCH_CHOICES`) over ``model``.

    ``index_dir`` caches the faiss index (ignored by exact search); ``kwargs`` go to the searcher
    (e.g. ``corpus_chunk_size``, or ``ef_search``/``use_gpu`` for faiss).
    """
    if getattr(model, "score_function", None) == "maxsim":  # late interaction (PT2-ColBERT)
        if search not in ("exact", "maxsim"):
            raise ConfigError(
                f"a late-interaction model searches with exact MaxSim; --search {search} is for single-vector models"
            )
        from .maxsim import MaxSimSearch

        return MaxSimSearch(
            model, batch_size=batch_size, index_dir=index_dir, show_progress_bar=show_progress_bar, **kwargs
        )
    if search == "exact":
        if index_dir is not None:
            logger.info("Exact search keeps no index: index_dir=%s is not used", index_dir)
        return ExactSearch(model, batch_size=batch_size, show_progress_bar=show_progress_bar, **kwargs)
    if search in ("faiss-flat", "faiss-hnsw"):
        from .faiss_search import FaissSearch

        return FaissSearch(
            model,
            index_type=search.removeprefix("faiss-"),
            batch_size=batch_size,
            index_dir=index_dir,
            show_progress_bar=show_progress_bar,
            **kwargs,
        )
    raise ConfigError(f"unknown search {search!r}; choose one of {', '.join(SEARCH_CHOICES)}")
