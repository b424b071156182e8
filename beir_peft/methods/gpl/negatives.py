"""GPL stage 2: hard negatives for every generated query from one or more retrievers.

Wang et al. 2022 (seed 002), section 4: two MS MARCO bi-encoders with cosine similarity
(``msmarco-distilbert-base-v3`` and ``msmarco-MiniLM-L-6-v3``), 50 negatives each, the query's
positive removed; Table 6 also tries BM25 (``"bm25"`` here, :class:`~beir_peft.search.bm25.BM25Search`).
A miner is any sentence-transformers model, saved beir_peft folder, or ``"bm25"``; dense miners are
searched exactly (or through faiss with ``search="faiss-flat"``/``"faiss-hnsw"``) with the package's
own searchers, each with the similarity it was trained with. BM25 searches by itself: with
``search`` other than ``"exact"`` or ``"sharded"`` a BM25 miner is refused.

``search="sharded"`` mines with :class:`~beir_peft.search.ShardedExactSearch`: the passages are
encoded to ``.npy`` shards under ``vectors_dir`` (resumable per shard after a kill) and, under
torch.distributed, split across the processes, every one of which gets the same rankings (exact
search's, up to float ties). A BM25 miner splits the queries: each process searches a contiguous
share and every process gets all the rankings (BM25 scores a query alone, so they are one process's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MINERS = (
    "sentence-transformers/msmarco-distilbert-base-v3",
    "sentence-transformers/msmarco-MiniLM-L-6-v3",
)


def mine_negatives(
    miners: Sequence[str],
    corpus: Mapping[str, Mapping[str, Any]],
    queries: Mapping[str, str],
    positives: Mapping[str, str],
    depth: int = 50,
    search: str = "exact",
    batch_size: int = 128,
    device: str | None = None,
    show_progress_bar: bool = True,
    max_seq_length: int | None = None,
    vectors_dir: str | Path | None = None,
    shard_size: int | None = None,
) -> dict[str, dict[str, list[str]]]:
    """``{query_id: {miner: [doc_id, ...]}}``: each miner's top ``depth`` passages, the positive removed.

    One miner is loaded at a time. ``positives`` maps each query to its source passage.
    ``max_seq_length`` truncates a dense miner's inputs (``None``: the miner's own length).
    ``vectors_dir``: with ``search="sharded"``, where each dense miner's vector shards go
    (``miner-<i>/``; ``None``: a temporary folder), ``shard_size`` passages a shard (``None``: the
    searcher's default).
    """
    from ...registry import SEARCHER, retriever_kind
    from ...retrievers import load_retriever
    from ...search import make_search, ranks

    found: dict[str, dict[str, list[str]]] = {qid: {} for qid in queries}
    for index, miner in enumerate(miners):
        logger.info("Mining %d negatives per query with %s", depth, miner)
        model = load_retriever(miner, device=device)
        if max_seq_length is not None and hasattr(model, "model"):  # a dense model (BM25 has none)
            model.model.max_seq_length = int(max_seq_length)
        options = {}
        if search == "sharded" and retriever_kind(model) != SEARCHER:
            where = None if vectors_dir is None else Path(vectors_dir) / f"miner-{index}"
            options = {"sharded": True, "vectors_dir": where}
            if shard_size is not None:
                options["shard_size"] = int(shard_size)
        searcher = make_search(
            model, "exact" if search == "sharded" else search, batch_size=batch_size,
            show_progress_bar=show_progress_bar, **options,
        )  # fmt: skip
        score_function = getattr(model, "score_function", None)
        if retriever_kind(model) == SEARCHER and ranks.world_size() > 1:
            run = _search_split_by_query(searcher, corpus, queries, depth + 1, score_function)
        else:
            run = searcher.search(corpus, queries, top_k=depth + 1, score_function=score_function)
        for qid in queries:
            ranked = sorted(run.get(qid, {}).items(), key=lambda item: -item[1])
            found[qid][miner] = [doc for doc, _ in ranked if doc != positives[qid]][:depth]
        del model, searcher
    return found


def _search_split_by_query(
    searcher, corpus, queries, top_k: int, score_function
) -> dict[str, dict[str, float]]:
    """``searcher``'s run over ``queries``, each process searching a contiguous share of them."""
    from ...search import ranks

    ids = list(queries)
    per = -(-len(ids) // ranks.world_size())
    mine = {qid: queries[qid] for qid in ids[ranks.rank() * per : (ranks.rank() + 1) * per]}
    run = searcher.search(corpus, mine, top_k=top_k, score_function=score_function) if mine else {}
    merged: dict[str, dict[str, float]] = {}
    for part in ranks.gather_objects(run):
        merged.update(part)
    return merged
