"""GPL's corpus-size rule: how many passages to use and how many queries to generate per passage.

Wang et al. 2022 (seed 002), section 4.3: the generated queries total a fixed budget, 250K:
``q_avg x |C| = 250K``. With ``q_avg >= 3``, the corpus is uniformly down-sampled when
``3 x |C| > 250K``; then ``q_avg = ceil(250K / |C|)``. FiQA (57.6K passages) gets 5 queries per
passage; Robust04 (528.2K) is down-sampled to 83.3K passages with 3 each. As in the authors' code,
the down-sampled size is ``ceil(250K / 3)`` (83,334), so that its ``q_avg`` stays 3.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from ...errors import ConfigError

#: the paper's budget of generated queries
PAPER_TOTAL_QUERIES = 250_000
#: the fewest queries per passage the rule gives (the paper's q_avg >= 3)
MIN_QUERIES_PER_PASSAGE = 3


def gpl_sizing(
    corpus_size: int,
    total_queries: int = PAPER_TOTAL_QUERIES,
    queries_per_passage: int | None = None,
    num_passages: int | None = None,
) -> tuple[int, int]:
    """``(passages, queries_per_passage)`` for a corpus of ``corpus_size`` passages.

    The paper's rule for ``total_queries`` (default 250K); an explicit ``queries_per_passage``
    and/or ``num_passages`` overrides its part of the rule (``num_passages`` is capped at the corpus).

    >>> gpl_sizing(57_638)      # FiQA
    (57638, 5)
    >>> gpl_sizing(528_155)     # Robust04
    (83334, 3)
    """
    if corpus_size < 1:
        raise ConfigError("GPL needs a corpus with at least one passage")
    if total_queries < 1:
        raise ConfigError(f"total_queries must be >= 1, got {total_queries}")
    if num_passages is not None and num_passages < 1:
        raise ConfigError(f"num_passages must be >= 1, got {num_passages}")
    if queries_per_passage is not None and queries_per_passage < 1:
        raise ConfigError(f"queries_per_passage must be >= 1, got {queries_per_passage}")
    if num_passages is None:
        if MIN_QUERIES_PER_PASSAGE * corpus_size > total_queries:
            num_passages = math.ceil(total_queries / MIN_QUERIES_PER_PASSAGE)
        else:
            num_passages = corpus_size
    num_passages = min(num_passages, corpus_size)
    if queries_per_passage is None:
        queries_per_passage = max(MIN_QUERIES_PER_PASSAGE, math.ceil(total_queries / num_passages))
    return num_passages, queries_per_passage


def sample_passages(doc_ids: Sequence[str], num_passages: int, seed: int = 42) -> list[str]:
    """A uniform sample of ``num_passages`` ids (all of them, in corpus order, when not fewer)."""
    if num_passages >= len(doc_ids):
        return list(doc_ids)
    chosen = set(random.Random(seed).sample(range(len(doc_ids)), num_passages))
    return [doc_id for index, doc_id in enumerate(doc_ids) if index in chosen]
