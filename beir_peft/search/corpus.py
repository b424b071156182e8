"""What every searcher needs to know about its inputs: clean corpus entries and a model description.

BEIR corpora sometimes carry ``None`` (or no) titles and texts; BEIR's own searchers then crash in
their length sort (``None + str``). :func:`sanitize_corpus` gives every entry string ``title`` and
``text`` fields on *shallow copies*, so the caller's dict is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
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
