"""GPL stage 3: training triples and their pseudo labels.

Wang et al. 2022 (seed 002), sections 3-4: each training example is a generated query, its source
passage (positive) and one negative drawn uniformly from the union of the miners' negatives; the
label is the margin ``CE(q, pos) - CE(q, neg)`` of the cross-encoder ``ms-marco-MiniLM-L-6-v2`` on
its raw logits (no sigmoid). As in the authors' code, the examples are drawn once, before training,
for the whole run (``steps x batch_size`` of them), by passing over the queries in a shuffled order
(re-shuffled on each pass).

The teacher is anything with :class:`MarginLabeler`'s two methods: :class:`PseudoLabeler` (the
paper's cross-encoder) is one implementation, :class:`~beir_peft.methods.gpl.oracle.OracleLabeler`
(relevance judgements posing as a teacher, to test that the signal reaches the student) another.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from ...data import passage_text
from ...errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-6-v2"


def draw_triples(
    query_ids: Sequence[str],
    positives: Mapping[str, str],
    negatives: Mapping[str, Mapping[str, Sequence[str]]],
    count: int,
    seed: int,
) -> list[tuple[str, str, str]]:
    """``count`` triples ``(query_id, positive_id, negative_id)``, queries in seeded shuffled passes.

    A query without any negative is skipped (logged); none at all is a :class:`DatasetError`.
    """
    usable = []
    for qid in query_ids:
        pool = sorted({doc for docs in negatives.get(qid, {}).values() for doc in docs})
        if pool:
            usable.append((qid, pool))
    if len(usable) < len(query_ids):
        logger.info(
            "%d of %d queries have no hard negative and are not used",
            len(query_ids) - len(usable),
            len(query_ids),
        )
    if not usable:
        raise DatasetError("GPL: no generated query has a hard negative; check the miners and the corpus")
    rng = random.Random(seed)
    triples: list[tuple[str, str, str]] = []
    while len(triples) < count:
        order = list(usable)
        rng.shuffle(order)
        for qid, pool in order[: count - len(triples)]:
            triples.append((qid, positives[qid], rng.choice(pool)))
    return triples


@runtime_checkable
class MarginLabeler(Protocol):
    """GPL's teacher: what stage 3 needs to label (query, positive, negative) triples.

    ``margins`` returns ``teacher(q, pos) - teacher(q, neg)`` per triple, on the teacher's own
    (unbounded, logit-like) scale; ``describe`` is the JSON record saved in the run folder and in
    the trained retriever's training record, so a folder always says which teacher made its labels.
    """

    def margins(
        self,
        triples: Sequence[tuple[str, str, str]],
        queries: Mapping[str, str],
        corpus: Mapping[str, Mapping[str, Any]],
    ) -> list[float]: ...

    def describe(self) -> dict[str, Any]: ...


def cross_encoder_record(model_name_or_path: str) -> dict[str, Any]:
    """The :meth:`MarginLabeler.describe` record of the cross-encoder labeller (no model loaded)."""
    return {"kind": "cross-encoder", "model": str(model_name_or_path)}


class PseudoLabeler:
    """Cross-encoder margins for (query, positive, negative) triples: the paper's :class:`MarginLabeler`.

    Args:
        model_name_or_path: a sentence-transformers ``CrossEncoder`` (hub name or folder) with one
            output logit.
        max_length: input length of the cross-encoder (GPL: 350).
        batch_size: pairs scored at a time.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_CROSS_ENCODER,
        max_length: int = 350,
        batch_size: int = 64,
        device: str | None = None,
    ):
        from sentence_transformers import CrossEncoder

        self.name = model_name_or_path
        self.batch_size = batch_size
        try:
            # identity activation: GPL's labels are raw-logit margins (a sigmoid would squash them)
            self.model = CrossEncoder(
                model_name_or_path, max_length=max_length, device=device, activation_fn=torch.nn.Identity()
            )
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the cross-encoder {model_name_or_path!r}: {err}") from err
        if self.model.num_labels != 1:
            raise ConfigError(
                f"{model_name_or_path}: a pseudo labeler needs one relevance logit, it has {self.model.num_labels}"
            )

    def describe(self) -> dict[str, Any]:
        return cross_encoder_record(self.name)

    def scores(self, pairs: Sequence[tuple[str, str]], show_progress_bar: bool = False) -> list[float]:
        """Raw logits of (query, passage) pairs."""
        values = self.model.predict(
            list(pairs),
            batch_size=self.batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
        )
        return [float(v) for v in values]

    def margins(
        self,
        triples: Sequence[tuple[str, str, str]],
        queries: Mapping[str, str],
        corpus: Mapping[str, Mapping[str, Any]],
    ) -> list[float]:
        """``CE(q, pos) - CE(q, neg)`` for every triple, in order."""
        pos = [(queries[q], passage_text(corpus[p])) for q, p, _ in triples]
        neg = [(queries[q], passage_text(corpus[n])) for q, _, n in triples]
        scores = self.scores(pos + neg)
        return [a - b for a, b in zip(scores[: len(triples)], scores[len(triples) :], strict=True)]


def chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """``(index, slice)`` pairs of ``size`` items."""
    for index, start in enumerate(range(0, len(items), size)):
        yield index, items[start : start + size]
