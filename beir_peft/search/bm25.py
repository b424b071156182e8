"""Lexical BM25 as a BEIR search class, embedded (bm25s) instead of BEIR's Elasticsearch server.

BEIR's BM25 baseline (Thakur et al. 2021, section 4.1) is Elasticsearch with its defaults: Lucene's
BM25 with ``k1 = 1.2``, ``b = 0.75``, an English analyzer (lower-casing, stop words, stemming), over
``title + " " + text``. :class:`BM25Search` does the same in-process with bm25s (Lù 2024,
``method="lucene"``) and PyStemmer's English Snowball stemmer, so it needs no server; scores match
Lucene's formula, though tokenisation differs in details from Elasticsearch's analyzer, so expect
nDCG within a point or so of BEIR's published BM25, not equal to it.

Used for BM25 hard negatives (``beir-peft train ... --negatives bm25``), as a baseline model
(``beir-peft evaluate --model bm25``), and by anything that wants a lexical first stage.
Only documents sharing at least one term with the query are returned (a score of 0 is no match).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from beir.retrieval.search import BaseSearch

from ..data import passage_text
from ..errors import ConfigError
from ..registry import SEARCHER
from .corpus import check_queries, check_top_k, sanitize_corpus

logger = logging.getLogger(__name__)

#: Elasticsearch's (and so BEIR's) BM25 parameters
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75


def _bm25s():
    try:
        import bm25s
    except ImportError as err:  # an extra: pip install "beir-peft[bm25]"
        raise ConfigError('BM25 needs bm25s and PyStemmer: pip install "beir-peft[bm25]"') from err
    # bm25s sets its own logger to DEBUG on import, which prints "Building index ..." through any
    # root handler; let it inherit the application's level instead
    bm25s_logger = logging.getLogger("bm25s")
    if bm25s_logger.level == logging.DEBUG:
        bm25s_logger.setLevel(logging.NOTSET)
    return bm25s


def _stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as err:
        raise ConfigError('BM25 stemming needs PyStemmer: pip install "beir-peft[bm25]"') from err
    try:
        return Stemmer.Stemmer(language)
    except KeyError as err:
        raise ConfigError(f"PyStemmer has no stemmer for language {language!r}") from err


class BM25Search(BaseSearch):
    """BM25 retrieval over a BEIR corpus: ``search(corpus, queries, top_k) -> {qid: {doc_id: score}}``.

    Args:
        k1, b: BM25 parameters (default: Elasticsearch's 1.2 and 0.75, as in BEIR).
        stemmer: a PyStemmer language (default ``"english"``), or ``None`` for no stemming.
        stopwords: bm25s stop-word list (default ``"en"``), or ``None`` to keep every word.
        show_progress_bar: bm25s' progress bars while indexing and retrieving.

    The index is built on the first search and reused while the corpus' doc ids stay the same.
    ``score_function`` is accepted and ignored (BEIR's ``EvaluateRetrieval`` passes one).
    """

    #: what BEIR's EvaluateRetrieval is told (and records); BM25 ranks by its own score
    score_function = "bm25"
    #: it searches by itself (:mod:`beir_peft.registry`)
    retriever_kind = SEARCHER

    def __init__(
        self,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        show_progress_bar: bool = True,
    ):
        if not k1 > 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 > 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = float(k1), float(b)
        self.stemmer_language = stemmer
        self.stopwords = stopwords
        self.show_progress_bar = show_progress_bar
        self._stem = _stemmer(stemmer)
        self._retriever = None
        self._doc_ids: list[str] = []
        self._digest: str | None = None
        self.results: dict[str, dict[str, float]] = {}

    def describe(self) -> str:
        """A short description for tables and result files."""
        return f"BM25 (bm25s, k1={self.k1:g}, b={self.b:g}, stemmer={self.stemmer_language})"

    def config(self) -> dict[str, Any]:
        """The settings that identify this BM25 (for result files and caches)."""
        return {
            "method": "bm25",
            "k1": self.k1,
            "b": self.b,
            "stemmer": self.stemmer_language,
            "stopwords": self.stopwords,
        }

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return _bm25s().tokenize(
            texts,
            stopwords=self.stopwords or [],
            stemmer=self._stem,
            return_ids=False,
            show_progress=False,
        )

    def index(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        """Build the BM25 index of ``corpus`` (``title + " " + text`` per document)."""
        doc_ids, docs = sanitize_corpus(corpus)
        digest = hashlib.sha256(json.dumps(doc_ids).encode("utf-8")).hexdigest()
        if self._retriever is not None and digest == self._digest:
            return
        logger.info("Indexing %d documents for BM25", len(doc_ids))
        retriever = _bm25s().BM25(k1=self.k1, b=self.b, method="lucene")
        retriever.index(
            self._tokenize([passage_text(doc) for doc in docs]), show_progress=self.show_progress_bar
        )
        self._retriever, self._doc_ids, self._digest = retriever, doc_ids, digest

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str | None = None,
        return_sorted: bool = False,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top ``top_k`` documents per query by BM25, best first; documents with no query term are left out."""
        check_queries(queries)
        check_top_k(top_k)
        if not corpus:
            raise ConfigError("the corpus is empty: there is nothing to search")
        self.index(corpus)
        query_ids = list(queries)
        k = min(int(top_k), len(self._doc_ids))
        positions, scores = self._retriever.retrieve(
            self._tokenize([queries[qid] for qid in query_ids]),
            k=k,
            show_progress=self.show_progress_bar,
            n_threads=0,
        )
        self.results = {}
        for qid, row_positions, row_scores in zip(
            query_ids, positions.tolist(), scores.tolist(), strict=True
        ):
            self.results[qid] = {
                self._doc_ids[p]: float(s) for p, s in zip(row_positions, row_scores, strict=True) if s > 0
            }
        return self.results

    def encode(self, *args, **kwargs):
        """Not applicable: BM25 has no embeddings."""
        raise NotImplementedError("BM25Search has no embeddings to encode")

    def search_from_files(self, *args, **kwargs):
        """Not applicable: BM25 has no embeddings."""
        raise NotImplementedError("BM25Search has no embeddings to search")


__all__ = ["DEFAULT_B", "DEFAULT_K1", "BM25Search"]
