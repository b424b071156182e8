"""An oracle teacher for GPL built from relevance judgements: a check that the signal reaches the student.

No cross-encoder or T5 weights can be had offline, so GPL's real teachers have only ever run as
tiny random models. :class:`OracleLabeler` stands in for the cross-encoder of GPL's stage 3 (Wang et
al. 2022, seed 002, section 3): it scores ``(query, passage)`` with a cross-encoder-like logit,
``high`` (+5) when the passage is judged relevant to the query and ``low`` (-5) otherwise, so a
triple's margin is +10 (positive relevant, negative not), 0 (both or neither relevant) or -10.
``inverted=True`` swaps the two scores: an anti-oracle whose margins push the student the wrong way.

``base`` anchors the oracle on another teacher: the margin becomes ``base margin + oracle margin``,
so the oracle agrees with ``base`` everywhere except that it knows the judgements. With
:class:`DenseMarginLabeler` of the student's starting model as ``base``, every label asks the
student for exactly one thing, "move the judged passage ``high - low`` further above this
negative", and nothing about the scale of its scores (a constant margin of +10 against raw
all-MiniLM-L6-v2 dot-product margins of 2.1 +- 3.5 also asks each triple for its own rescaling).

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

import torch

from ...encoders.backbone import DEFAULT_BACKBONE
from ...errors import ConfigError, DatasetError
from .pseudo_labels import MarginLabeler

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
        base: another teacher whose margins the oracle's are added to (see the module docstring).
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
        base: MarginLabeler | None = None,
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
        self.base = base

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
        """``score(q, pos) - score(q, neg)`` for every ``(query_id, positive_id, negative_id)``,
        plus ``base``'s margin for the same triple when the oracle has a base."""
        margins = [self.score(queries[q], p) - self.score(queries[q], n) for q, p, n in triples]
        if self.base is not None:
            anchor = self.base.margins(triples, queries, corpus)
            margins = [a + b for a, b in zip(anchor, margins, strict=True)]
        return margins

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "oracle",
            "inverted": self.inverted,
            "relevant_score": self.high,
            "other_score": self.low,
            "judged_pairs": self.pairs,
            "source": self.source,
            "base": None if self.base is None else self.base.describe(),
        }


class DenseMarginLabeler:
    """A :class:`~beir_peft.methods.gpl.pseudo_labels.MarginLabeler` from a dense retriever's own scores.

    ``margins`` is ``s(q, pos) - s(q, neg)`` with ``s`` the retriever's score function (``dot`` or
    ``cos_sim``) on its ``encode_queries`` / ``encode_corpus`` vectors; each distinct query and
    passage is encoded once. As the ``base`` of an :class:`OracleLabeler` built on the student's
    starting model, it makes the oracle's labels relative to where the student starts.

    Args:
        retriever: a BEIR dense model with ``encode_queries``, ``encode_corpus`` and ``score_function``.
        name: recorded in :meth:`describe` (e.g. the backbone's name).
        batch_size: encoding batch size.
    """

    def __init__(self, retriever: Any, name: str, batch_size: int = 64):
        if getattr(retriever, "score_function", None) not in ("dot", "cos_sim"):
            raise ConfigError(f"dense margin labeller: {name} has no 'dot' or 'cos_sim' score function")
        self.retriever = retriever
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def of_dot_student_start(cls, backbone: str = DEFAULT_BACKBONE, max_seq_length: int | None = None):
        """The margins of where a GPL ``dot`` student starts: ``backbone`` without its final
        Normalize, scored by dot product (the ``base`` that anchors an oracle on the student)."""
        from ...models.tuned import build_retriever

        options = {} if max_seq_length is None else {"max_seq_length": max_seq_length}
        start = build_retriever("ft", backbone, normalize=False, **options)
        return cls(start, name=f"{backbone} (no Normalize)")

    def margins(
        self,
        triples: Sequence[tuple[str, str, str]],
        queries: Mapping[str, str],
        corpus: Mapping[str, Mapping[str, Any]],
    ) -> list[float]:
        """The retriever's ``s(q, pos) - s(q, neg)`` for every ``(query_id, positive_id, negative_id)``."""
        if not triples:
            return []
        query_ids = sorted({q for q, _, _ in triples})
        doc_ids = sorted({d for _, p, n in triples for d in (p, n)})
        encode = {"batch_size": self.batch_size, "convert_to_tensor": True, "show_progress_bar": False}
        q_vectors = self.retriever.encode_queries([queries[q] for q in query_ids], **encode).float()
        d_vectors = self.retriever.encode_corpus([corpus[d] for d in doc_ids], **encode).float()
        if self.retriever.score_function == "cos_sim":
            q_vectors = torch.nn.functional.normalize(q_vectors, dim=-1)
            d_vectors = torch.nn.functional.normalize(d_vectors, dim=-1)
        q_row = {q: i for i, q in enumerate(query_ids)}
        d_row = {d: i for i, d in enumerate(doc_ids)}
        q = q_vectors[[q_row[t[0]] for t in triples]]
        pos = d_vectors[[d_row[t[1]] for t in triples]]
        neg = d_vectors[[d_row[t[2]] for t in triples]]
        return ((q * pos).sum(-1) - (q * neg).sum(-1)).tolist()

    def describe(self) -> dict[str, Any]:
        return {"kind": "dense", "model": self.name, "score_function": self.retriever.score_function}


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
