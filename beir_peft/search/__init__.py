"""Dense searchers over BEIR corpora: exact brute force, or a faiss index (flat or HNSW).

Late-interaction models (PT2-ColBERT) are searched by :class:`MaxSimSearch`: exact MaxSim over every
document, or ColBERT's end-to-end retrieval (faiss candidates over token vectors, then MaxSim).

:func:`make_search` turns the CLI's ``--search`` choice into a BEIR ``BaseSearch``. faiss is only
imported when a faiss searcher is asked for.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..registry import LATE_INTERACTION, SEARCHER, SINGLE_VECTOR, retriever_kind
from .corpus import model_description, sanitize_corpus, sanitize_doc
from .exact import ExactSearch
from .maxsim import MaxSimSearch
from .sharded_exact import ShardedExactSearch

if TYPE_CHECKING:
    from beir.retrieval.search import BaseSearch

    from .faiss_search import FaissSearch

logger = logging.getLogger(__name__)

#: searches of single-vector (bi-encoder) models
SINGLE_VECTOR_SEARCHES = ("exact", "faiss-flat", "faiss-hnsw", "faiss")
#: searches of late-interaction models (``"maxsim"`` is accepted as an alias of ``"exact"``)
LATE_INTERACTION_SEARCHES = ("exact", "ann")
SEARCH_CHOICES = ("exact", "faiss-flat", "faiss-hnsw", "faiss", "ann")
#: options of exact single-vector search that make it :class:`ShardedExactSearch` (``sharded=True``:
#: with a temporary folder, as ``evaluate`` does under torchrun)
SHARDED_EXACT_OPTIONS = ("vectors_dir", "shard_size", "vector_dtype", "sharded")

__all__ = [
    "LATE_INTERACTION_SEARCHES",
    "SEARCH_CHOICES",
    "SHARDED_EXACT_OPTIONS",
    "SINGLE_VECTOR_SEARCHES",
    "ExactSearch",
    "FaissSearch",
    "MaxSimSearch",
    "ShardedExactSearch",
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

    The model's kind (:func:`beir_peft.registry.retriever_kind`) decides. A ``model`` that is
    already a BEIR search class (:class:`~beir_peft.search.bm25.BM25Search`) is returned as it is
    (only ``search="exact"``, the default, applies to it).

    Single-vector models: ``exact``, ``faiss-flat``, ``faiss-hnsw`` or ``faiss`` (any faiss
    ``index_factory`` string, ``kwargs["index_factory"]``, default ``"Flat"``; trained on a seeded
    sample when it needs training; ``nprobe``/``ef_search`` at search time). Late-interaction models
    (e.g. PT2-ColBERT): ``exact`` (MaxSim against every
    document) or ``ann`` (faiss candidates over all token vectors, then exact MaxSim re-ranking).
    ``index_dir`` caches the faiss index or the token vectors (ignored by exact single-vector
    search), reused only for the same model fingerprint and corpus (else rebuilt, with a
    warning); ``kwargs`` go to the searcher (e.g. ``corpus_chunk_size``, ``ef_search``/``use_gpu``
    for faiss, ``candidates_per_token``/``nprobe``/``use_gpu`` for ``ann``). Exact single-vector
    search with any of :data:`SHARDED_EXACT_OPTIONS` (``vectors_dir``, ``shard_size``,
    ``vector_dtype``, ``sharded``) encodes the corpus to memory-mapped ``.npy`` shards and searches
    them in bounded chunks (:class:`ShardedExactSearch`; split across torch.distributed ranks).
    """
    kind = retriever_kind(model)
    sharded = [key for key in SHARDED_EXACT_OPTIONS if key in kwargs]
    if sharded and (search != "exact" or kind != SINGLE_VECTOR):
        raise ConfigError(
            f"{', '.join(sharded)}: only for exact search of a single-vector model (vectors on disk); "
            f"{model_description(model)} with --search {search} does not take them"
        )
    if kind == SEARCHER:  # already a searcher (BM25): used as it is
        if search != "exact" or kwargs:
            raise ConfigError(
                f"{model_description(model)} searches by itself; --search {search} and search options do not apply"
            )
        if hasattr(model, "show_progress_bar"):
            model.show_progress_bar = show_progress_bar
        return model
    if kind == LATE_INTERACTION:  # PT2-ColBERT
        if search not in ("exact", "maxsim", "ann"):
            raise ConfigError(
                f"a late-interaction model is searched with MaxSim: --search exact (every document) or ann "
                f"(faiss candidates, then MaxSim re-ranking); --search {search} is for single-vector models"
            )
        from .maxsim import MaxSimSearch

        return MaxSimSearch(
            model,
            mode="ann" if search == "ann" else "exact",
            batch_size=batch_size,
            index_dir=index_dir,
            show_progress_bar=show_progress_bar,
            **kwargs,
        )
    if sharded:
        kwargs.pop("sharded", None)
        return ShardedExactSearch(model, batch_size=batch_size, show_progress_bar=show_progress_bar, **kwargs)
    if search == "exact":
        if index_dir is not None:
            logger.info("Exact search keeps no index: index_dir=%s is not used", index_dir)
        return ExactSearch(model, batch_size=batch_size, show_progress_bar=show_progress_bar, **kwargs)
    if search == "faiss":
        from .faiss_search import FaissSearch

        kwargs.setdefault("index_factory", "Flat")
        return FaissSearch(
            model,
            index_type="factory",
            batch_size=batch_size,
            index_dir=index_dir,
            show_progress_bar=show_progress_bar,
            **kwargs,
        )
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
    if search == "ann":
        raise ConfigError(
            "--search ann (faiss candidates over token vectors, then MaxSim re-ranking) is for "
            f"late-interaction models (pt2-colbert, colbert-ft); this single-vector model takes "
            f"{_either(SINGLE_VECTOR_SEARCHES)}"
        )
    raise ConfigError(
        f"unknown search {search!r}; choose {_either(SINGLE_VECTOR_SEARCHES)} (single-vector models), "
        f"or {_either(LATE_INTERACTION_SEARCHES)} (late interaction)"
    )


def _either(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}"
