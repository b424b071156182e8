"""An oracle teacher for GPL built from relevance judgements: a check that the signal reaches the student.

No cross-encoder or T5 weights can be had offline, so GPL's real teachers have only ever run as
tiny random models. :class:`OracleLabeler` stands in for the cross-encoder of GPL's stage 3 (Wang et
al. 2022, seed 002, section 3): it scores ``(query, passage)`` with a cross-encoder-like logit,
``high`` (+5) when the passage is judged relevant to the query and ``low`` (-5) otherwise, so a
triple's margin is +10 (positive relevant, negative not), 0 (both or neither relevant) or -10.
``inverted=True`` swaps the two scores: an anti-oracle whose margins push the student the wrong way.

Queries are matched **by text**, so the pipeline's query ids (a queries file's ``_id``) need not be
the qrels' ids. :func:`oracle_queries` turns the judged pairs into the rows of a GPL queries file
(``_id``, ``text``, ``doc_id``): each question with its relevant passage as the passage a generated
query would have been written for. Everything after that (mining, labelling, MarginMSE training) is
the pipeline as users run it.

This is a test instrument, not GPL: a folder trained with it records ``kind: oracle`` (and
``inverted``) in its training record and model card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ConfigError, DatasetError

#: a cross-encoder-like logit scale (ms-marco-MiniLM-L-6-v2's logits span roughly -11 to +11)
ORACLE_HIGH = 5.0
ORACLE_LOW = -5.0


class OracleLabeler:
    """A :class:`~beir_peft.methods.gpl.pseudo_labels.MarginLabeler` that knows the qrels.

    Args:
        qrels: ``{query_id: {doc_id: relevance}}``; relevance > 0 counts as relevant.
        queries: ``{query_id: text}`` for those ids (texts are what the pipeline's queries carry).
        inverted: score relevant passages ``low`` and the others ``high`` (the anti-oracle).
        source: a free-form note of where the qrels come from (e.g. ``"scifact train"``), recorded.
    """

    def __init__(
        self,
        qrels: Mapping[str, Mapping[str, int]],
        queries: Mapping[str, str],
        *,
        high: float = ORACLE_HIGH,
        low: float = ORACLE_LOW,
        inverted: bool = False,
        source: str | None = None,
    ):
        if not high > low:
            raise ConfigError(f"oracle labeller: high ({high}) must be above low ({low})")
        self.relevant: dict[str, set[str]] = {}
        for qid, docs in qrels.items():
            if qid not in queries:
                raise DatasetError(f"oracle labeller: qrels query {qid!r} has no text in the queries")
            judged = {str(doc) for doc, rel in docs.items() if rel > 0}
            self.relevant.setdefault(queries[qid], set()).update(judged)
        if not any(self.relevant.values()):
            raise DatasetError("oracle labeller: the qrels hold no relevant (query, passage) pair")
        self.high, self.low = (low, high) if inverted else (high, low)
        self.inverted = inverted
        self.source = source
        self.pairs = sum(len(docs) for docs in self.relevant.values())

    def score(self, query: str, doc_id: str) -> float:
        """The oracle's logit for the query text ``query`` and the passage ``doc_id``."""
        if query not in self.relevant:
            raise DatasetError(f"oracle labeller: the query {query[:60]!r} is not in its qrels")
        return self.high if doc_id in self.relevant[query] else self.low

    def margins(
        self,
        triples: Sequence[tuple[str, str, str]],
        queries: Mapping[str, str],
        corpus: Mapping[str, Mapping[str, Any]],
    ) -> list[float]:
        """``score(q, pos) - score(q, neg)`` for every ``(query_id, positive_id, negative_id)``."""
        return [self.score(queries[q], p) - self.score(queries[q], n) for q, p, n in triples]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "oracle",
            "inverted": self.inverted,
            "relevant_score": self.high,
            "other_score": self.low,
            "judged_pairs": self.pairs,
            "source": self.source,
        }


def oracle_queries(
    qrels: Mapping[str, Mapping[str, int]], queries: Mapping[str, str]
) -> list[dict[str, str]]:
    """GPL queries-file rows from judged pairs: one row per relevant ``(query, passage)`` pair.

    ``_id`` is ``"{query_id}:{doc_id}"`` (unique), ``text`` the question, ``doc_id`` the passage a
    generated query would have been written for. A question with several relevant passages gives
    several rows (the oracle scores the others relevant too, so a triple drawing one of them as the
    negative gets margin 0). Rows are sorted by query id, then passage id.
    """
    rows = []
    for qid in sorted(qrels):
        if qid not in queries:
            raise DatasetError(f"oracle queries: qrels query {qid!r} has no text in the queries")
        for doc in sorted(str(d) for d, rel in qrels[qid].items() if rel > 0):
            rows.append({"_id": f"{qid}:{doc}", "text": queries[qid], "doc_id": doc})
    if not rows:
        raise DatasetError("oracle queries: the qrels hold no relevant (query, passage) pair")
    return rows
