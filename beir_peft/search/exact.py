"""Exact (brute-force) dense search: BEIR's ``DenseRetrievalExactSearch`` with its input bugs fixed.

BEIR 2.2.0's exact search

* crashes on a single query (``len(cos_scores[1])`` indexes the second row of the score matrix),
* crashes on ``None`` titles or texts (its longest-first sort concatenates them),
* silently drops a document whose id equals the query id, whatever the evaluation asks for.

:class:`ExactSearch` wraps it without changing its scoring: the corpus is sanitised on shallow
copies, and queries are renamed to internal ids that collide with no document id (which also
covers the single-query case: at least two internal queries are always searched).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from beir.retrieval.search.dense import DenseRetrievalExactSearch

from ..errors import ConfigError
from .corpus import check_queries, check_top_k, sanitize_corpus

logger = logging.getLogger(__name__)

_QUERY_PREFIX = "__beir_peft_query__"
_PAD = "pad"


class ExactSearch(DenseRetrievalExactSearch):
    """Brute-force top-k search over every corpus embedding, chunk by chunk.

    Args:
        model: a BEIR dense model (``encode_queries``/``encode_corpus``).
        batch_size: encoding batch size.
        corpus_chunk_size: passages encoded and scored at a time (bounds memory).
        show_progress_bar: forwarded to the model's encoders.

    Unlike BEIR's searcher, a document whose id equals the query id is *kept*; BEIR's
    ``EvaluateRetrieval.evaluate(..., ignore_identical_ids=True)`` removes it at evaluation time.
    """

    def __init__(
        self,
        model: Any,
        batch_size: int = 128,
        corpus_chunk_size: int = 50000,
        show_progress_bar: bool = True,
        **kwargs: Any,
    ):
        super().__init__(
            model,
            batch_size=batch_size,
            corpus_chunk_size=corpus_chunk_size,
            show_progress_bar=show_progress_bar,
            **kwargs,
        )

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str,
        return_sorted: bool = False,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query: ``{query_id: {doc_id: score}}``, best first.

        ``top_k`` larger than the corpus returns every document. Never mutates ``corpus`` or ``queries``.
        """
        check_queries(queries)
        check_top_k(top_k)
        if score_function not in self.score_functions:
            raise ConfigError(
                f"score_function must be one of {sorted(self.score_functions)}, got {score_function!r}"
            )
        doc_ids, docs = sanitize_corpus(corpus)
        clean_corpus = dict(zip(doc_ids, docs, strict=True))

        # Internal query ids that no document id can equal: BEIR then drops nothing, and a padding
        # query keeps the score matrix at two rows or more.
        prefix = _QUERY_PREFIX
        while any(doc_id.startswith(prefix) for doc_id in clean_corpus if isinstance(doc_id, str)):
            prefix = f"_{prefix}"
        query_ids = list(queries)
        internal = {f"{prefix}{i}": qid for i, qid in enumerate(query_ids)}
        internal_queries = {iid: queries[qid] for iid, qid in internal.items()}
        if len(internal_queries) == 1:
            internal_queries[f"{prefix}{_PAD}"] = next(iter(internal_queries.values()))

        raw = super().search(clean_corpus, internal_queries, top_k, score_function, return_sorted, **kwargs)
        self.results = {
            internal[iid]: dict(sorted(hits.items(), key=lambda item: item[1], reverse=True))
            for iid, hits in raw.items()
            if iid in internal
        }
        return self.results
