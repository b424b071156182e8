"""What every searcher needs to know about its inputs: clean corpus entries, and who and what a saved index is for.

BEIR corpora sometimes carry ``None`` (or no) titles and texts; BEIR's own searchers then crash in
their length sort (``None + str``). :func:`sanitize_corpus` gives every entry string ``title`` and
``text`` fields on *shallow copies*, so the caller's dict is never touched.

A saved index (``FaissSearch``'s and ``MaxSimSearch``'s ``index_dir``) is keyed by
:func:`model_fingerprint` (a digest of the model's weights and settings, ``None`` for a model that
has no ``fingerprint()``) and :func:`corpus_digest` (the doc ids *and* their texts), and
:func:`describe_differences` names what differs when a saved index does not fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError


def sanitize_doc(doc: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """A shallow copy of one BEIR corpus entry whose ``title`` and ``text`` are strings ("" if missing)."""
    if doc is None:
        return {"title": "", "text": ""}
    if isinstance(doc, str):
        return {"title": "", "text": doc}
    clean = dict(doc)
    for field in ("title", "text"):
        value = clean.get(field)
        clean[field] = "" if value is None else str(value)
    return clean


def sanitize_corpus(corpus: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Split a BEIR corpus ``{doc_id: {"title", "text"}}`` into ``(ids, docs)`` in dict order.

    Returns two lists of length ``len(corpus)``; ``docs[i]`` is a sanitised copy of ``corpus[ids[i]]``.
    Raises :class:`ConfigError` for an empty corpus.
    """
    if not corpus:
        raise ConfigError("the corpus is empty: there is nothing to search")
    ids = list(corpus)
    return ids, [sanitize_doc(corpus[doc_id]) for doc_id in ids]


def check_queries(queries: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` when there are no queries."""
    if not queries:
        raise ConfigError("there are no queries to search with")


def check_top_k(top_k: int) -> None:
    """Raise :class:`ConfigError` unless ``top_k`` is a positive integer."""
    if int(top_k) != top_k or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")


def model_description(model: Any) -> str:
    """A short, stable (no memory addresses) description of a BEIR dense model for configs and indexes.

    Uses ``model.describe()`` when the model has one, else its ``name_or_path``/``model_name``
    attribute, else ``ClassName(score_function=...)``.
    """
    describe = getattr(model, "describe", None)
    if callable(describe):
        return str(describe())
    for attr in ("name_or_path", "model_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    score_function = getattr(model, "score_function", None)
    return f"{type(model).__name__}(score_function={score_function!r})"


def corpus_digest(doc_ids: Sequence[str], docs: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 (hex) of a corpus' ids, titles and texts, whatever the order of its entries.

    ``doc_ids`` and ``docs`` as :func:`sanitize_corpus` returns them. Order does not matter because
    a saved index records its own doc id order; a changed title or text under the same id does.
    """
    digest = hashlib.sha256()
    for position in sorted(range(len(doc_ids)), key=doc_ids.__getitem__):
        doc = docs[position]
        for part in (doc_ids[position], doc.get("title") or "", doc.get("text") or ""):
            data = str(part).encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguous joins
            digest.update(data)
    return digest.hexdigest()


def model_fingerprint(model: Any) -> str | None:
    """``model.fingerprint()`` (a digest of everything that shapes its vectors), or ``None`` when the
    model has none: an arbitrary BEIR model object, whose saved indexes are then never reused."""
    fingerprint = getattr(model, "fingerprint", None)
    if not callable(fingerprint):
        return None
    value = fingerprint()
    return str(value) if value is not None else None


#: what :func:`describe_differences` calls the keys of an index identity
_IDENTITY_LABELS = {
    "model": "model description",
    "fingerprint": "model (weights or settings)",
    "corpus_sha256": "corpus (doc ids or texts)",
}


def describe_differences(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """``"model (weights or settings): 1f2e... there, 9a8b... now; index_type: ..."``: the keys of
    ``expected`` whose value in ``saved`` differs, for the warning that a saved index is rebuilt."""
    parts = []
    for key, want in expected.items():
        have = saved.get(key)
        if have != want:
            parts.append(f"{_IDENTITY_LABELS.get(key, key)}: {_short(have)} there, {_short(want)} now")
    return "; ".join(parts) or "nothing"


def _short(value: Any) -> str:
    """A value for a log line: long hex digests cut to 12 digits, ``None`` as "none recorded"."""
    if value is None:
        return "none recorded"
    text = str(value)
    if len(text) > 16 and all(ch in "0123456789abcdef" for ch in text):
        return text[:12] + "..."
    return text
