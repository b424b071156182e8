"""ART's adaptation check (issue 17, item 3): held-out questions with the teacher's choice.

A run keeps ``ARTConfig.held_out_questions`` of its questions (a seeded tenth at most) out of
training. At the end, the start model (the untrained student: the backbone itself for every student,
see :func:`~.training.build_student`) and the adapted one each retrieve their top-``K`` passages from
the whole corpus for every held-out question; the teacher scores the union of the two lists, and
its preferred passage is the one both models must rank first among all the held-out questions'
candidates (:mod:`beir_peft.training.adaptation_check`: nDCG@10, a one-line warning when the
adapted model is not better).

The signal is the run's own, as section 2 of the paper trains on it: it says whether the student
learned to agree with its teacher on questions it never saw, not whether the teacher is right (an
anti-oracle teacher is agreed with as well as an oracle). It catches a learning rate that wrecks the
backbone, a budget too small to move it and a student that memorised its training questions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...data import passage_text
from ...search import make_search, ranks
from ...training.adaptation_check import HeldOutSignal


def candidates(
    questions: Mapping[str, str],
    corpus: Mapping[str, Mapping[str, Any]],
    models: Sequence[Any],
    *,
    top_k: int,
    batch_size: int = 128,
) -> dict[str, list[str]]:
    """Each question's (id -> text) candidates: the union of every one of ``models`` (BEIR dense
    models)' top-``top_k`` from the whole ``corpus`` by exact search, in the order found.

    Collective under torch.distributed: every process calls it with the same arguments, and the
    corpus' encoding is split between them (:class:`~beir_peft.search.ShardedExactSearch`), so a
    large corpus costs each process its share, not the main process the whole."""
    options = {"sharded": True} if ranks.world_size() > 1 else {}
    found: dict[str, dict[str, None]] = {qid: {} for qid in questions}  # ordered sets
    for model in models:
        search = make_search(model, "exact", batch_size=batch_size, show_progress_bar=False, **options)
        run = search.search(corpus, dict(questions), top_k, getattr(model, "score_function", "dot"))
        for qid, hits in run.items():
            for doc in sorted(hits, key=hits.__getitem__, reverse=True):
                found[qid].setdefault(doc)
    return {qid: list(docs) for qid, docs in found.items()}


def teacher_choice_signal(
    questions: Mapping[str, str],
    corpus: Mapping[str, Mapping[str, Any]],
    models: Sequence[Any],
    teacher: Any,
    *,
    top_k: int,
    tied: float,
    batch_size: int = 128,
) -> HeldOutSignal:
    """The held-out signal of ``questions`` (id -> text) over ``corpus``: the :func:`candidates` of
    ``models`` (collective under torch.distributed), which ``teacher`` (a
    :class:`~.teacher.RelevanceTeacher`) scores once per question and passage; its best passages
    (within ``tied`` of its top score) are the question's choice. Questions whose scores all tie
    are left out (:meth:`HeldOutSignal.teacher_choice`)."""
    pooled = candidates(questions, corpus, models, top_k=top_k, batch_size=batch_size)
    pairs = [(qid, doc) for qid, docs in pooled.items() for doc in docs]
    values = teacher.score([questions[q] for q, _ in pairs], [passage_text(corpus[d]) for _, d in pairs])
    scores: dict[str, dict[str, float]] = {qid: {} for qid in questions}
    for (qid, doc), value in zip(pairs, values, strict=True):
        scores[qid][doc] = float(value)
    return HeldOutSignal.teacher_choice(questions, scores, corpus, tied=tied)


__all__ = ["candidates", "teacher_choice_signal"]
