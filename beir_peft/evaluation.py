"""Evaluate a dense retriever on a BEIR split with BEIR's stock evaluator, and write the results.

Metric values and key names are BEIR's own (``NDCG@10``, ``MAP@10``, ``Recall@10``, ``P@10``,
``MRR@10``, rounded to 5 decimals by BEIR). Two BEIR 2.2.0 quirks are worked around here:

* ``EvaluateRetrieval.evaluate`` pops identical query/doc ids from the run it is given, so it
  gets a copy;
* its MRR averages over *every* qrels query (and crashes on a run query without qrels) while the
  pytrec_eval metrics average over queries present in both; MRR gets the same query set.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytrec_eval
from beir.retrieval.evaluation import EvaluateRetrieval

from .errors import ConfigError, DatasetError
from .io import atomic_open, write_json_atomic
from .search import make_search, model_description
from .versions import library_versions

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES = (1, 3, 5, 10, 100, 1000)
METRIC_ROWS = ("NDCG", "MAP", "Recall", "P", "MRR")

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


@dataclass
class EvaluationResult:
    """One evaluation of one retriever on one split.

    Attributes:
        metrics: BEIR's metrics, e.g. ``{"NDCG@10": 0.41, "MRR@10": ...}`` for every k.
        per_query_ndcg10: ``{query_id: nDCG@10}`` from pytrec_eval, for significance tests.
        results: the run ``{query_id: {doc_id: score}}`` exactly as the searcher returned it.
        config: dataset, split, model, search, k_values, batch_size, score_function, ignore_identical_ids.
        timings: seconds for ``"search"`` (encoding included), ``"evaluate"`` and ``"total"``.
        versions: library versions (see :func:`library_versions`).
    """

    metrics: dict[str, float]
    per_query_ndcg10: dict[str, float]
    results: dict[str, dict[str, float]]
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the run itself is left out: see :func:`write_run_file`)."""
        return {
            "metrics": dict(self.metrics),
            "config": dict(self.config),
            "ignore_identical_ids": self.config.get("ignore_identical_ids"),
            "versions": dict(self.versions),
            "timings": dict(self.timings),
            "per_query": {"NDCG@10": dict(self.per_query_ndcg10)},
        }


def _check_k_values(k_values: Iterable[int]) -> list[int]:
    values = sorted({int(k) for k in k_values})
    if not values or values[0] < 1:
        raise ConfigError(f"k_values must be positive integers, got {list(k_values)!r}")
    return values


def _copy_run(results: Run, ignore_identical_ids: bool) -> dict[str, dict[str, float]]:
    """A deep copy of the run with float scores, without doc == query ids when asked (as BEIR does)."""
    return {
        qid: {pid: float(score) for pid, score in hits.items() if not (ignore_identical_ids and pid == qid)}
        for qid, hits in results.items()
    }


def evaluate_run(
    qrels: Qrels,
    results: Run,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    ignore_identical_ids: bool = True,
) -> dict[str, float]:
    """BEIR's metrics of a run: nDCG, MAP, Recall, P (``EvaluateRetrieval.evaluate``) and MRR.

    Returns ``{"NDCG@k", "MAP@k", "Recall@k", "P@k", "MRR@k"}`` for every k, averaged over the
    queries present in both ``qrels`` and ``results``. ``results`` is not modified.
    Raises :class:`DatasetError` when no run query has relevance judgements.
    """
    k_values = _check_k_values(k_values)
    run = _copy_run(results, ignore_identical_ids=False)  # BEIR pops identical ids itself
    judged = [qid for qid in run if qid in qrels]
    if not judged:
        raise DatasetError("no query of the run has relevance judgements (qrels); check the split")
    ndcg, _map, recall, precision = EvaluateRetrieval.evaluate(qrels, run, k_values, ignore_identical_ids)
    # run now lacks identical ids (when asked); MRR sees the same queries and documents.
    mrr_qrels = {qid: qrels[qid] for qid in judged}
    mrr_run = {qid: run[qid] for qid in judged}
    mrr = EvaluateRetrieval.evaluate_custom(mrr_qrels, mrr_run, k_values, "mrr")
    return {**ndcg, **_map, **recall, **precision, **mrr}


def per_query_ndcg(
    qrels: Qrels, results: Run, k: int = 10, ignore_identical_ids: bool = True
) -> dict[str, float]:
    """``{query_id: nDCG@k}`` by pytrec_eval, for queries in both ``qrels`` and ``results``."""
    run = _copy_run(results, ignore_identical_ids)
    evaluator = pytrec_eval.RelevanceEvaluator(dict(qrels), {f"ndcg_cut.{k}"})
    return {qid: scores[f"ndcg_cut_{k}"] for qid, scores in evaluator.evaluate(run).items()}


def evaluate_retriever(
    model: Any,
    corpus: Mapping[str, Mapping[str, Any]],
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    search: str = "exact",
    batch_size: int = 128,
    ignore_identical_ids: bool = True,
    index_dir: str | os.PathLike | None = None,
    show_progress_bar: bool = True,
    config: Mapping[str, Any] | None = None,
    search_options: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Retrieve the top ``max(k_values)`` passages per query with BEIR's ``EvaluateRetrieval`` and score them.

    ``model`` is a BEIR dense model; its ``score_function`` attribute (default ``"cos_sim"``) is
    what the searcher ranks by. ``config`` adds entries (``dataset``, ``split``, ``model`` ...) to
    the result's config; the entries describing the run itself cannot be overridden.
    ``model`` may instead be a BEIR search class itself (e.g. :class:`BM25Search`), used as it is.
    ``search_options`` go to the searcher (e.g. ``candidates_per_token``/``nprobe`` for ``ann``).
    """
    k_values = _check_k_values(k_values)
    score_function = getattr(model, "score_function", None) or "cos_sim"
    start = time.perf_counter()
    searcher = make_search(
        model,
        search,
        batch_size=batch_size,
        index_dir=index_dir,
        show_progress_bar=show_progress_bar,
        **dict(search_options or {}),
    )
    retriever = EvaluateRetrieval(searcher, k_values=k_values, score_function=score_function)
    logger.info(
        "Searching %d queries over %d passages (%s, %s)", len(queries), len(corpus), search, score_function
    )
    results = retriever.retrieve(corpus, queries)
    searched = time.perf_counter()

    metrics = evaluate_run(qrels, results, k_values, ignore_identical_ids)
    per_query = per_query_ndcg(qrels, results, 10, ignore_identical_ids)
    done = time.perf_counter()

    full_config: dict[str, Any] = {
        "dataset": None,
        "split": None,
        "model": model_description(model),
        "num_queries": len(queries),
        "num_docs": len(corpus),
        **dict(config or {}),
        "search": search,
        **({"search_options": dict(search_options)} if search_options else {}),
        "k_values": k_values,
        "batch_size": batch_size,
        "score_function": score_function,
        **({"encoding_dtype": model.encoding_dtype} if hasattr(model, "encoding_dtype") else {}),
        **({"search_settings": searcher.search_settings()} if hasattr(searcher, "search_settings") else {}),
        "ignore_identical_ids": ignore_identical_ids,
    }
    return EvaluationResult(
        metrics=metrics,
        per_query_ndcg10=per_query,
        results=results,
        config=full_config,
        timings={"search": searched - start, "evaluate": done - searched, "total": done - start},
        versions=library_versions(),
    )


def write_run_file(results: Run, path: str | os.PathLike, run_name: str = "beir_peft") -> None:
    """Write a TREC run: ``qid Q0 docid rank score run_name`` lines, best score first per query.

    Ties are broken by doc id so the file is deterministic; scores keep full float precision
    (trec_eval re-sorts by score). Raises :class:`ConfigError` for ids or a run name with whitespace.
    """
    if not run_name or any(ch.isspace() for ch in run_name):
        raise ConfigError(f"run_name must be one word, got {run_name!r}")
    with atomic_open(path, "w") as handle:
        for qid, hits in results.items():
            ranked = sorted(hits.items(), key=lambda item: (-float(item[1]), item[0]))
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                if any(ch.isspace() for ch in f"{qid}{doc_id}"):
                    raise ConfigError(f"ids with whitespace cannot go in a TREC run: {qid!r}, {doc_id!r}")
                handle.write(f"{qid} Q0 {doc_id} {rank} {float(score)!r} {run_name}\n")


def format_table(metrics: Mapping[str, float], k_values: Sequence[int] = DEFAULT_K_VALUES) -> str:
    """A fixed-width table: one row per metric (NDCG, MAP, Recall, P, MRR), one column per @k."""
    k_values = _check_k_values(k_values)
    width = 8
    lines = [f"{'':<7}" + "".join(f"{'@' + str(k):>{width}}" for k in k_values)]
    for name in METRIC_ROWS:
        cells = []
        for k in k_values:
            value = metrics.get(f"{name}@{k}")
            cells.append(f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}")
        lines.append(f"{name:<7}" + "".join(cells))
    return "\n".join(lines)


def format_domains_table(
    metrics: Mapping[str, Mapping[str, float]],
    models: Mapping[str, str],
    k_values: Sequence[int] = DEFAULT_K_VALUES,
) -> str:
    """One row per dataset (``metrics``: ``{dataset: BEIR metrics}``, ``models``: ``{dataset: model
    label}``), columns NDCG@k and Recall@k for every k: several datasets evaluated side by side."""
    k_values = _check_k_values(k_values)
    columns = [f"{name}@{k}" for name in ("NDCG", "Recall") for k in k_values]
    name_width = max([7, *(len(n) for n in metrics)]) + 2
    model_width = max([5, *(len(m) for m in models.values())]) + 2
    width = max(9, *(len(c) + 2 for c in columns))
    lines = [f"{'dataset':<{name_width}}{'model':<{model_width}}" + "".join(f"{c:>{width}}" for c in columns)]
    for dataset, values in metrics.items():
        cells = [
            f"{values[c]:>{width}.4f}" if values.get(c) is not None else f"{'-':>{width}}" for c in columns
        ]
        lines.append(f"{dataset:<{name_width}}{models.get(dataset, ''):<{model_width}}" + "".join(cells))
    return "\n".join(lines)


def write_result_json(result: EvaluationResult, path: str | os.PathLike) -> None:
    """Write :meth:`EvaluationResult.to_json` to ``path`` atomically."""
    write_json_atomic(path, result.to_json())
