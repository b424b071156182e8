"""Hard negatives for supervised training: one miner's top passages, or DPTDR's unified mining.

:func:`mine_hard_negatives` takes one retriever's top passages that are not judged relevant (DPR:
BM25's; here by default the starting backbone's). :func:`unified_negatives` is DPTDR's "unified
negative mining" (Tang et al. 2022, seed 001; the paper names it without a recipe, so this follows
the issue's reading of it, as in RocketQA's denoised negatives, Qu et al. 2021, section 4.2):

1. candidates from a dense retriever, typically the model being trained after a first round
   (``train --negatives unified --negatives-from ROUND1``), and from BM25, interleaved rank by
   rank (dense 1, BM25 1, dense 2, ...), each passage once;
2. false negatives guarded: candidates judged relevant are dropped, and so is every candidate the
   dense retriever scores above its score of the query's lowest-scored relevant passage minus
   ``margin`` (a passage scored like a positive is more likely an unlabelled positive than a
   negative).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..data import BeirDataset
from ..errors import ConfigError


def _ranked(retriever: Any, dataset: BeirDataset, depth: int, batch_size: int, show_progress_bar: bool):
    """``{query_id: [(doc_id, score), ...]}`` best first: ``retriever``'s top passages for every
    training query, deep enough that ``depth`` remain after the relevant ones are removed."""
    from ..search import make_search

    judged = {qid for qid, _ in dataset.train_pairs()}
    queries = {qid: dataset.queries[qid] for qid in judged}
    search = make_search(retriever, "exact", batch_size=batch_size, show_progress_bar=show_progress_bar)
    score_function = getattr(retriever, "score_function", "dot")
    # TREC-style qrels can judge dozens of passages relevant to one query
    most_relevant = max(
        (sum(score > 0 for score in dataset.qrels.get(qid, {}).values()) for qid in queries), default=0
    )
    top_k = min(len(dataset.corpus), depth + most_relevant + 10)
    run = search.search(dataset.corpus, queries, top_k=top_k, score_function=score_function)
    return {qid: sorted(hits.items(), key=lambda item: -item[1]) for qid, hits in run.items()}


def _relevant(dataset: BeirDataset, qid: str) -> set[str]:
    return {doc for doc, score in dataset.qrels.get(qid, {}).items() if score > 0}


def _unjudged(hits: list[tuple[str, float]], relevant: set[str], qid: str) -> list[str]:
    """The ranked passages that are neither judged relevant nor the query itself."""
    return [doc for doc, _ in hits if doc not in relevant and doc != qid]


def mine_hard_negatives(
    retriever: Any,
    dataset: BeirDataset,
    depth: int = 30,
    batch_size: int = 128,
    show_progress_bar: bool = True,
) -> dict[str, list[str]]:
    """``{query_id: [doc_id, ...]}``: the retriever's top ``depth`` passages that are not judged relevant.

    ``retriever`` is a dense model (searched exactly over the whole corpus) or a BEIR search class
    such as :class:`beir_peft.search.bm25.BM25Search`; only the training queries are searched.
    """
    ranked = _ranked(retriever, dataset, depth, batch_size, show_progress_bar)
    negatives = {}
    for qid, hits in ranked.items():
        negatives[qid] = _unjudged(hits, _relevant(dataset, qid), qid)[:depth]
    return negatives


def dense_scores(dense: Any, dataset: BeirDataset, pairs: set[tuple[str, str]], batch_size: int = 128):
    """``{(query_id, doc_id): score}`` of ``dense`` (its own score function) for ``pairs``."""
    if not pairs:
        return {}
    query_ids = sorted({qid for qid, _ in pairs})
    doc_ids = sorted({doc for _, doc in pairs})
    normalize = getattr(dense, "score_function", "dot") == "cos_sim"  # as the exact search scores
    q = np.asarray(dense.encode_queries([dataset.queries[qid] for qid in query_ids], batch_size=batch_size,
                                        normalize_embeddings=normalize))  # fmt: skip
    d = np.asarray(dense.encode_corpus([dataset.corpus[doc] for doc in doc_ids], batch_size=batch_size,
                                       normalize_embeddings=normalize))  # fmt: skip
    q_row = {qid: i for i, qid in enumerate(query_ids)}
    d_row = {doc: i for i, doc in enumerate(doc_ids)}
    return {(qid, doc): float(q[q_row[qid]] @ d[d_row[doc]]) for qid, doc in pairs}


def unified_negatives(
    dense: Any,
    dataset: BeirDataset,
    depth: int = 30,
    margin: float = 0.0,
    bm25: Any = None,
    batch_size: int = 128,
    show_progress_bar: bool = True,
) -> dict[str, list[str]]:
    """``{query_id: [doc_id, ...]}``: up to ``depth`` negatives per training query from ``dense``'s and
    BM25's rankings interleaved, false negatives guarded (module docstring).

    ``dense``: a dense retriever (a loaded folder or a sentence-transformers model); ``bm25``: a BEIR
    search class (default :class:`~beir_peft.search.bm25.BM25Search`); ``margin``: a candidate is kept
    only when ``dense`` scores it below ``(lowest relevant passage's score) - margin``.
    """
    from ..registry import SINGLE_VECTOR, retriever_kind

    if retriever_kind(dense) != SINGLE_VECTOR:
        raise ConfigError(
            f"unified negatives score passages with one vector each; the dense miner ({type(dense).__name__}) "
            "is a late-interaction model"
        )
    if bm25 is None:
        from ..search.bm25 import BM25Search

        bm25 = BM25Search(show_progress_bar=show_progress_bar)
    from_dense = _ranked(dense, dataset, depth, batch_size, show_progress_bar)
    from_bm25 = _ranked(bm25, dataset, depth, batch_size, show_progress_bar)
    known = {(qid, doc): score for qid, hits in from_dense.items() for doc, score in hits}
    relevant = {qid: _relevant(dataset, qid) for qid in from_dense.keys() | from_bm25.keys()}
    candidates: dict[str, list[str]] = {}
    for qid, judged in relevant.items():
        rankings = [_unjudged(hits.get(qid, []), judged, qid) for hits in (from_dense, from_bm25)]
        interleaved = (doc for pair in itertools.zip_longest(*rankings) for doc in pair if doc is not None)
        candidates[qid] = list(dict.fromkeys(interleaved))
    # dense scores of the relevant passages and of the BM25 candidates the dense ranking did not reach
    needed = {(qid, doc) for qid, judged in relevant.items() for doc in judged if doc in dataset.corpus}
    needed |= {(qid, doc) for qid, docs in candidates.items() for doc in docs}
    scores = {**known, **dense_scores(dense, dataset, needed - known.keys(), batch_size)}
    negatives = {}
    for qid, docs in candidates.items():
        positive = [scores[(qid, doc)] for doc in relevant[qid] if (qid, doc) in scores]
        ceiling = min(positive) - margin if positive else float("inf")
        negatives[qid] = [doc for doc in docs if scores[(qid, doc)] < ceiling][:depth]
    return negatives


__all__ = ["dense_scores", "mine_hard_negatives", "unified_negatives"]
