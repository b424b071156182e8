"""Training pairs cut from a corpus without labels: retrieval-oriented intermediate pre-training.

DPTDR (Tang et al. 2022, seed 001) closes part of the gap between deep prompt tuning and full
fine-tuning with "retrieval-oriented intermediate pretraining" before the supervised stage; the
paper's abstract gives no recipe, so the pairs here are the two classic label-free retrieval
pairs, each a (pseudo-query, passage) row for the same in-batch-negative loss as the labelled pairs:

* ``"title"``: a document's title as the query, its text as the passage (documents without a title
  or a text are skipped);
* ``"ict"``: the Inverse Cloze Task (Lee et al. 2019, ORQA, section 5): one sentence of a document
  as the query, the document as the passage, the sentence removed from it with probability 0.9
  (so the model learns more than word overlap) and kept otherwise; documents of one sentence are
  skipped.

One row per document, drawn with ``seed``. Use: ``beir-peft train pt2-dpr --pairs ict`` on the
target corpus, then ``beir-peft train pt2-dpr --init-from <that folder>`` on the labelled pairs.
"""

from __future__ import annotations

import random
import re

from ..data import BeirDataset
from ..errors import DatasetError
from ..training.config import PAIR_SOURCES

#: ORQA: the sentence stays in its passage 10% of the time
ICT_KEEP_SENTENCE = 0.1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def sentences(text: str) -> list[str]:
    """``text`` split after ``.``, ``!`` or ``?`` followed by a capital, a digit or a bracket."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def corpus_rows(dataset: BeirDataset, source: str, seed: int) -> list[dict[str, str]]:
    """``[{"query": ..., "positive": ...}, ...]``: one label-free pair per usable document of
    ``dataset.corpus`` (``source``: ``"title"`` or ``"ict"``, see the module docstring)."""
    if source not in PAIR_SOURCES[1:]:
        raise DatasetError(
            f"corpus pairs: unknown source {source!r}; choose one of {', '.join(PAIR_SOURCES[1:])}"
        )
    rng = random.Random(seed)
    rows = []
    for doc_id in sorted(dataset.corpus):
        doc = dataset.corpus[doc_id]
        title, text = (doc.get("title") or "").strip(), (doc.get("text") or "").strip()
        if source == "title":
            if title and text:
                rows.append({"query": title, "positive": text})
            continue
        parts = sentences(text)
        if len(parts) < 2:
            continue
        index = rng.randrange(len(parts))
        kept = parts if rng.random() < ICT_KEEP_SENTENCE else parts[:index] + parts[index + 1 :]
        passage = " ".join(kept)
        rows.append({"query": parts[index], "positive": f"{title} {passage}".strip()})
    if not rows:
        what = "a title and a text" if source == "title" else "two sentences or more"
        raise DatasetError(
            f"{dataset.name}: no document with {what}, nothing to pre-train on (--pairs {source})"
        )
    return rows


__all__ = ["ICT_KEEP_SENTENCE", "PAIR_SOURCES", "corpus_rows", "sentences"]
