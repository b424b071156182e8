"""Adaptation that knows when it failed: the start model against the adapted one, on held-out signal.

Unsupervised adaptation (GPL, QGen) can leave a model worse than the one it started from, and
nothing in its training loss says so (GPL's users report it). So a run keeps a seeded sample of its
own training signal out of training: generated queries with the passages they were generated from.
At the end, both models rank each held-out query's passage among the held-out passages (BEIR's
exact search and evaluator: nDCG@10 with the source passage as the one relevant one), and the
folder records both numbers, with a one-line warning when the adapted model is not better.

The check is about the run's own signal, not the target task: a model that gets better at it may
still be worse on real queries (bad generated queries teach the wrong thing well). It catches the
failures the signal can see: a wrong teacher, a learning rate that wrecks the backbone, a budget
too small to move it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import CARD_NAME, CONFIG_NAME, model_card, read_config
from ..evaluation import evaluate_retriever
from ..io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

#: where the check lives in a folder's config.json (under "training")
CHECK_KEY = "adaptation_check"
#: the metric the check compares, as BEIR's evaluator names it
METRIC = "NDCG@10"
#: at most this share of the signal is held out, so training keeps nine tenths of it
MAX_HELD_OUT_SHARE = 10


def held_out_sample(ids: Sequence[str], wanted: int, seed: int) -> list[str]:
    """The ids kept out of training: ``min(wanted, len(ids) // 10)`` of them, drawn with ``seed``
    (the same for any order of ``ids``), in ``ids``' order; none below 2 (one query ranks nothing)."""
    count = min(int(wanted), len(ids) // MAX_HELD_OUT_SHARE)
    if count < 2:
        return []
    chosen = set(random.Random(seed).sample(sorted(ids), count))
    return [i for i in ids if i in chosen]


@dataclass
class HeldOutSignal:
    """What both models are scored on: ``queries`` (id -> text), the candidate passages ``corpus``
    (BEIR's id -> {"title", "text"}) and, per query, the signal's choice as ``qrels`` (id -> {doc: 1})."""

    description: str
    queries: dict[str, str]
    corpus: dict[str, dict[str, Any]]
    qrels: dict[str, dict[str, int]]

    @classmethod
    def generated_queries(
        cls, rows: Sequence[Mapping[str, str]], corpus: Mapping[str, Mapping[str, Any]]
    ) -> HeldOutSignal:
        """GPL's and QGen's signal: held-out ``rows`` (``_id``, ``text``, ``doc_id``), each query's
        source passage to be found among all the held-out queries' source passages."""
        return cls(
            description="held-out generated queries, each with the passage it was generated from",
            queries={row["_id"]: row["text"] for row in rows},
            corpus={row["doc_id"]: dict(corpus[row["doc_id"]]) for row in rows},
            qrels={row["_id"]: {row["doc_id"]: 1} for row in rows},
        )


def check_adaptation(
    start: Any, adapted: Any, signal: HeldOutSignal, *, start_name: str, batch_size: int = 128
) -> dict[str, Any]:
    """Score ``start`` and ``adapted`` (BEIR dense models) on ``signal``; returns the record a
    folder keeps: the signal, its size, the metric, both scores, their difference and ``better``."""
    scores = {}
    for name, model in (("start", start), ("adapted", adapted)):
        result = evaluate_retriever(
            model, signal.corpus, signal.queries, signal.qrels, k_values=[10], batch_size=batch_size,
            ignore_identical_ids=False, show_progress_bar=False,
        )  # fmt: skip
        scores[name] = round(float(result.metrics[METRIC]), 5)
    return {
        "signal": signal.description,
        "held_out_queries": len(signal.queries),
        "candidate_passages": len(signal.corpus),
        "metric": METRIC,
        "start_model": start_name,
        "start": scores["start"],
        "adapted": scores["adapted"],
        "gain": round(scores["adapted"] - scores["start"], 5),
        "better": scores["adapted"] > scores["start"],
    }


def warning(check: Mapping[str, Any]) -> str | None:
    """The one-line warning for a check whose adapted model is not better; ``None`` when it is."""
    if check["better"]:
        return None
    return (
        f"warning: the adapted model is not better than its start ({check['start_model']}) on "
        f"{check['held_out_queries']} {check['signal']}: {check['metric']} {check['start']:.4f} -> "
        f"{check['adapted']:.4f}; check the teacher, the learning rate and the budget before using it"
    )


def summary(check: Mapping[str, Any]) -> str:
    """One line for the log: both scores and the verdict."""
    return warning(check) or (
        f"adaptation check: {check['metric']} {check['start']:.4f} -> {check['adapted']:.4f} "
        f"(+{check['gain']:.4f}) on {check['held_out_queries']} held-out queries"
    )


def recorded_check(folder: str | Path) -> dict[str, Any] | None:
    """The check a saved folder records, or ``None``."""
    return (read_config(folder).get("training") or {}).get(CHECK_KEY)


def record_check(folder: str | Path, check: Mapping[str, Any]) -> None:
    """Add ``check`` to the folder's training record (config.json) and its model card, atomically."""
    folder = Path(folder)
    config = read_config(folder)
    config.setdefault("training", {})[CHECK_KEY] = dict(check)
    write_text_atomic(folder / CARD_NAME, model_card(config, results={"adaptation": summary(check)}))
    write_json_atomic(folder / CONFIG_NAME, config)


def run_check(
    folder: str | Path,
    signal: HeldOutSignal | None,
    load_start: Callable[[], Any],
    load_adapted: Callable[[], Any],
    *,
    start_name: str,
    echo: Callable[[str], None] = logger.info,
) -> dict[str, Any] | None:
    """The check at the end of a run, once per folder: scored and recorded unless the folder already
    records it (a rerun of a finished run); its line goes to ``echo`` and, when it warns, to the
    log's warnings. ``signal`` ``None`` (nothing held out): no check."""
    if signal is None or not signal.queries:
        return None
    check = recorded_check(folder)
    if check is None:
        check = check_adaptation(load_start(), load_adapted(), signal, start_name=start_name)
        record_check(folder, check)
    line = summary(check)
    echo(line)
    if not check["better"]:
        logger.warning(line)
    return check


__all__ = [
    "CHECK_KEY",
    "HeldOutSignal",
    "check_adaptation",
    "held_out_sample",
    "record_check",
    "recorded_check",
    "run_check",
    "summary",
    "warning",
]
