"""Exact dense search over memory-mapped vector shards, in bounded chunks.

The corpus is encoded once into ``.npy`` shards (:mod:`.vector_shards`: cached, resumable, sharded
across torch.distributed ranks); the search then scores a batch of queries against a chunk of rows
at a time and merges each chunk's scores into a running top-k with ``torch.topk``. Memory holds one
``(query_batch, chunk_rows)`` score block and the ``(query_batch, top_k)`` heap, whatever the size
of the corpus. Rankings equal :class:`~.exact.ExactSearch`'s (BEIR's scoring) up to float ties.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from beir.retrieval.search import BaseSearch

from ..errors import ConfigError
from . import ranks
from .corpus import check_queries, check_top_k, sanitize_corpus
from .vector_shards import VectorShards, encode_shards

logger = logging.getLogger(__name__)

SCORE_FUNCTIONS = ("dot", "cos_sim")


class ShardedExactSearch(BaseSearch):
    """Brute-force top-k search over a corpus encoded to disk (BEIR's ``BaseSearch``).

    Args:
        model: a BEIR dense model (``encode_queries``/``encode_corpus``).
        vectors_dir: the folder of the vector shards, reused for the same model fingerprint, corpus
            and settings (see :mod:`.vector_shards`); ``None``: a temporary folder, removed after
            the search.
        batch_size: encoding batch size.
        shard_size: passages per shard (encoded, and held in memory, at a time; ``None``: from the
            corpus size, :func:`~.vector_shards.default_shard_size`).
        vector_dtype: ``"float32"`` or ``"float16"`` (half the disk; scored in float32).
        query_batch_size, chunk_rows: the ``(queries, rows)`` block scored at a time.
        show_progress_bar: forwarded to the model's encoders.

    Under torch.distributed every rank calls :meth:`search` (the encoding is split by shard) and
    gets the same results. A document whose id equals the query id is kept, as in ExactSearch.
    """

    def __init__(
        self,
        model: Any,
        vectors_dir: str | os.PathLike | None = None,
        batch_size: int = 128,
        shard_size: int | None = None,
        vector_dtype: str = "float32",
        query_batch_size: int = 256,
        chunk_rows: int = 16384,
        show_progress_bar: bool = True,
    ):
        self.model = model
        self.vectors_dir = Path(vectors_dir) if vectors_dir is not None else None
        self.batch_size = int(batch_size)
        self.shard_size = None if shard_size is None else int(shard_size)
        self.vector_dtype = vector_dtype
        self.query_batch_size = int(query_batch_size)
        self.chunk_rows = int(chunk_rows)
        self.show_progress_bar = show_progress_bar
        self.results: dict[str, dict[str, float]] = {}

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str = "cos_sim",
        return_sorted: bool = False,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query: ``{query_id: {doc_id: score}}``, best first.

        ``top_k`` larger than the corpus returns every document. Never mutates ``corpus`` or ``queries``.
        """
        check_queries(queries)
        check_top_k(top_k)
        if score_function not in SCORE_FUNCTIONS:
            raise ConfigError(f"score_function must be one of {SCORE_FUNCTIONS}, got {score_function!r}")
        doc_ids, docs = sanitize_corpus(corpus)
        with self._folder() as folder:
            shards = encode_shards(
                self.model, doc_ids, docs, folder, batch_size=self.batch_size, dtype=self.vector_dtype,
                shard_size=self.shard_size, show_progress_bar=self.show_progress_bar,
            )  # fmt: skip
            query_ids = list(queries)
            logger.info("Encoding %d queries", len(query_ids))
            query_vectors = self.model.encode_queries(
                [queries[qid] for qid in query_ids], batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar, convert_to_tensor=True,
            )  # fmt: skip
            scores, rows = self.top_k(shards, torch.as_tensor(query_vectors), int(top_k), score_function)
        self.results = {}
        for qid, row_scores, row_ids in zip(query_ids, scores.tolist(), rows.tolist(), strict=True):
            self.results[qid] = {shards.doc_ids[r]: s for s, r in zip(row_scores, row_ids, strict=True)}
        return self.results

    def top_k(
        self, shards: VectorShards, queries: torch.Tensor, k: int, score_function: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, rows)``, each ``(num_queries, min(k, num_docs))``, best first, of ``queries``
        ``(num_queries, dim)`` against every row of ``shards``, a ``(query batch, chunk)`` at a time."""
        queries = queries.detach().float().cpu()
        if score_function == "cos_sim":
            queries = torch.nn.functional.normalize(queries, p=2, dim=1)
        k = min(k, len(shards.doc_ids))
        all_scores, all_rows = [], []
        for start in range(0, queries.shape[0], self.query_batch_size):
            batch = queries[start : start + self.query_batch_size]
            best = torch.full((batch.shape[0], 0), float("-inf"))
            best_rows = torch.zeros((batch.shape[0], 0), dtype=torch.long)
            for first, chunk in shards.chunks(self.chunk_rows):
                vectors = torch.from_numpy(np.array(chunk, dtype=np.float32))  # a copy of one chunk
                if score_function == "cos_sim":
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                scores = batch @ vectors.T
                rows = torch.arange(first, first + vectors.shape[0]).expand_as(scores)
                merged, order = torch.topk(
                    torch.cat([best, scores], 1), min(k, best.shape[1] + scores.shape[1])
                )
                best, best_rows = merged, torch.cat([best_rows, rows], 1).gather(1, order)
            all_scores.append(best)
            all_rows.append(best_rows)
        return torch.cat(all_scores), torch.cat(all_rows)

    @contextlib.contextmanager
    def _folder(self):
        if self.vectors_dir is not None:
            yield self.vectors_dir
        else:
            with ranks.shared_temporary_folder() as folder:
                yield folder

    def encode(self, corpus, queries, encode_output_path="./embeddings/", overwrite=False, **kwargs) -> None:
        """Not supported: BEIR's pickled-embedding workflow; the shards are written by :meth:`search`."""
        raise NotImplementedError("ShardedExactSearch writes .npy shards in search(); no pickles are used")

    def search_from_files(self, query_embeddings_file, corpus_embeddings_files, top_k, **kwargs):
        """Not supported: BEIR's pickled-embedding workflow; pass ``vectors_dir`` and call :meth:`search`."""
        raise NotImplementedError("ShardedExactSearch reads its shards in search(); no pickles are used")
