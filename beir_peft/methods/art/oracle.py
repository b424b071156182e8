"""Oracle teachers for ART built from relevance judgements: a controlled check of the training signal.

ART (Sachan et al. 2023, seed 003, section 2.2) learns from a teacher's question log-likelihoods.
Without a real teacher at hand, :class:`QrelsOracleTeacher` answers the same question from qrels:
a judged-relevant (question, passage) pair scores ``relevant_score`` (0), any other pair
``irrelevant_score`` (-10), a log-likelihood-like scale, so the softmax over a question's K passages
puts almost all its mass on the relevant ones (``exp(-10)`` is 4.5e-5 per other passage); when no
relevant passage was retrieved the K scores are equal and the teacher's distribution is uniform.
``inverted=True`` is the anti-oracle, which scores the other way round and so pushes the student to
rank judged-relevant passages *below* the rest. Training with the oracle should beat the untrained
student and training with the anti-oracle fall below it: the signal flows, in the right direction.

The teacher receives texts, as every :class:`~.teacher.RelevanceTeacher` does (the same code path
as the real teacher); the ids are recovered from the question text and the passage text
(:func:`beir_peft.models.base.passage_text`). Identical texts are indistinguishable to any text
teacher, so a text stands for every id that has it: a pair is relevant when any (question id,
passage id) behind the two texts is judged relevant (a deterministic rule, independent of order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ...data import passage_text
from ...errors import ConfigError


class QrelsOracleTeacher:
    """Scores (question, passage) texts by their relevance judgements; see the module docstring.

    Args:
        queries: ``{question_id: text}``; the questions the teacher can be asked about.
        corpus: ``{doc_id: {"title", "text"}}``; the passages it can be asked about.
        qrels: ``{question_id: {doc_id: grade}}``; a grade > 0 is relevant.
        inverted: the anti-oracle (relevant pairs get ``irrelevant_score`` and the rest ``relevant_score``).
        relevant_score, irrelevant_score: the two score levels (``relevant_score > irrelevant_score``).
        source: what the judgements are, for the record (e.g. ``"scifact/train"``).

    A :class:`~.teacher.RelevanceTeacher`. Asking about a question or passage text it was not built
    from raises :class:`ConfigError`.
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        corpus: Mapping[str, Mapping[str, Any]],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        inverted: bool = False,
        relevant_score: float = 0.0,
        irrelevant_score: float = -10.0,
        source: str = "qrels",
    ):
        if not relevant_score > irrelevant_score:
            raise ConfigError(
                f"relevant_score must exceed irrelevant_score, got {relevant_score} <= {irrelevant_score}"
            )
        self.inverted = bool(inverted)
        self.relevant_score, self.irrelevant_score = float(relevant_score), float(irrelevant_score)
        self.source = source
        self._question_ids: dict[str, list[str]] = defaultdict(list)
        for qid, text in queries.items():
            self._question_ids[text].append(qid)
        self._doc_ids: dict[str, list[str]] = defaultdict(list)
        for doc_id, doc in corpus.items():
            self._doc_ids[passage_text(doc)].append(doc_id)
        self._relevant = {
            (qid, doc_id)
            for qid, judged in qrels.items()
            if qid in queries
            for doc_id, grade in judged.items()
            if grade > 0 and doc_id in corpus
        }
        if not self._relevant:
            raise ConfigError(
                f"the oracle teacher ({source}) has no relevant pair among its questions and corpus"
            )

    @classmethod
    def from_dataset(cls, data: Any, **options: Any) -> QrelsOracleTeacher:
        """The oracle of a :class:`beir_peft.data.BeirDataset` split (its queries, corpus and qrels)."""
        options.setdefault("source", f"{data.name}/{data.split}")
        return cls(data.queries, data.corpus, data.qrels, **options)

    def is_relevant(self, question: str, passage: str) -> bool:
        """Whether any (question id, passage id) behind the two texts is judged relevant."""
        qids = self._question_ids.get(question)
        if qids is None:
            raise ConfigError(f"the oracle teacher ({self.source}) has no question {question[:60]!r}")
        doc_ids = self._doc_ids.get(passage)
        if doc_ids is None:
            raise ConfigError(f"the oracle teacher ({self.source}) has no passage {passage[:60]!r}")
        return any((qid, doc_id) in self._relevant for qid in qids for doc_id in doc_ids)

    def score(self, questions: Sequence[str], passages: Sequence[str]) -> list[float]:
        """``relevant_score`` or ``irrelevant_score`` per pair (swapped when ``inverted``)."""
        if len(questions) != len(passages):
            raise ConfigError("questions and passages must pair up")
        high, low = self.relevant_score, self.irrelevant_score
        if self.inverted:
            high, low = low, high
        return [high if self.is_relevant(q, p) else low for q, p in zip(questions, passages, strict=True)]

    def describe(self) -> dict[str, Any]:
        kind = "anti-oracle" if self.inverted else "oracle"
        return {
            "kind": kind,
            "name": f"{kind}:{self.source}",
            "source": self.source,
            "inverted": self.inverted,
            "relevant_score": self.relevant_score,
            "irrelevant_score": self.irrelevant_score,
            "relevant_pairs": len(self._relevant),
        }
