"""Adaptation that knows when it failed: the start model against the adapted one, on held-out signal.

Unsupervised adaptation (GPL, QGen, ART) can leave a model worse than the one it started from, and
nothing in its training loss says so (GPL's users report it). So a run keeps a seeded sample of its
own training signal out of training: for GPL and QGen, generated queries with the passages they were
generated from; for ART, questions with the teacher's choice among the passages the two models
retrieve for them. At the end, both models rank each held-out query's chosen passage among the
held-out candidates (BEIR's exact search and evaluator: nDCG@10 with the chosen passage as the
relevant one), and the folder records both numbers, with a one-line warning when the adapted model
is not better.

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

from ..analysis.significance import paired_t_test
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
#: the end of a warning, unless the check names its own (``advice``)
ADVICE = "check the teacher, the learning rate and the budget before using it"


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

    @classmethod
    def teacher_choice(
        cls,
        queries: Mapping[str, str],
        scores: Mapping[str, Mapping[str, float]],
        corpus: Mapping[str, Mapping[str, Any]],
        *,
        tied: float = 1e-6,
    ) -> HeldOutSignal:
        """ART's signal: held-out ``queries`` with the teacher's ``scores`` (id -> {doc: score}) of
        their candidate passages; the chosen passages are those within ``tied`` of the query's best,
        the candidates the union of every query's scored passages. A query whose scores all tie
        (the teacher prefers nothing) is left out."""
        chosen = {}
        for qid, scored in scores.items():
            if not scored or max(scored.values()) - min(scored.values()) <= tied:
                continue
            best = max(scored.values())
            chosen[qid] = {doc: 1 for doc, value in scored.items() if value >= best - tied}
        return cls(
            description="held-out questions, each with the teacher's choice among the passages both models retrieve",
            queries={qid: queries[qid] for qid in chosen},
            corpus={doc: dict(corpus[doc]) for qid in chosen for doc in scores[qid]},
            qrels=chosen,
        )


#: what :func:`run_check` is given: the signal, or how to build it from the start and adapted models
#: (ART's candidates are what both retrieve); ``None``: nothing held out
SignalSource = HeldOutSignal | Callable[[Any, Any], HeldOutSignal] | None


def check_adaptation(
    start: Any, adapted: Any, signal: HeldOutSignal, *, start_name: str, batch_size: int = 128
) -> dict[str, Any]:
    """Score ``start`` and ``adapted`` (BEIR dense models) on ``signal``; returns the record a
    folder keeps: the signal, its size, the metric, both scores, their difference, ``better`` and
    ``p_value`` (two-tailed paired t-test over the held-out queries: a small sample's gain may be
    noise, and the record says how likely)."""
    scores, per_query = {}, {}
    for name, model in (("start", start), ("adapted", adapted)):
        result = evaluate_retriever(
            model, signal.corpus, signal.queries, signal.qrels, k_values=[10], batch_size=batch_size,
            ignore_identical_ids=False, show_progress_bar=False,
        )  # fmt: skip
        scores[name] = round(float(result.metrics[METRIC]), 5)
        per_query[name] = result.per_query_ndcg10
    test = paired_t_test(per_query["start"], per_query["adapted"], signal.queries)
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
        "p_value": float(f"{test.p_value:.3g}"),
    }


def warning(check: Mapping[str, Any]) -> str | None:
    """The one-line warning for a check whose adapted model is not better; ``None`` when it is."""
    if check["better"]:
        return None
    return (
        f"warning: the adapted model is not better than its start ({check['start_model']}) on "
        f"{held_out_count(check)} {check['signal']}: {check['metric']} {check['start']:.4f} -> "
        f"{check['adapted']:.4f}; {check.get('advice', ADVICE)}"
    )


def summary(check: Mapping[str, Any]) -> str:
    """One line for the log: both scores and the verdict."""
    significance = f", p={check['p_value']:.2g}" if "p_value" in check else ""
    return warning(check) or (
        f"adaptation check: {check['metric']} {check['start']:.4f} -> {check['adapted']:.4f} "
        f"(+{check['gain']:.4f}{significance}) on {held_out_count(check)} {check['signal'].split(',')[0]}"
    )


def held_out_count(check: Mapping[str, Any]) -> int:
    """How many held-out items a check scored: queries (GPL, QGen, ART) or passages (a DAM)."""
    return check["held_out_queries"] if "held_out_queries" in check else check["held_out_passages"]


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
    signal: SignalSource,
    load_start: Callable[[], Any],
    load_adapted: Callable[[], Any],
    *,
    start_name: str,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """The check at the end of a run, once per folder: scored and recorded unless the folder already
    records it (a rerun of a finished run). Its line goes to ``echo`` (the CLI's output) or, without
    one, to the log (:func:`say`). ``signal`` ``None`` or empty (nothing held out, or
    nothing the teacher prefers): no check."""
    if signal is None or (isinstance(signal, HeldOutSignal) and not signal.queries):
        return None
    check = recorded_check(folder)
    if check is None:
        start, adapted = load_start(), load_adapted()
        built = signal if isinstance(signal, HeldOutSignal) else signal(start, adapted)
        if not built.queries:
            logger.info("no adaptation check: the teacher prefers no passage for any held-out question")
            return None
        check = check_adaptation(start, adapted, built, start_name=start_name)
        record_check(folder, check)
    say(echo, summary(check), warns=not check["better"])
    return check


def say(echo: Callable[[str], None] | None, line: str, *, warns: bool) -> None:
    """``line`` once: to ``echo`` (the CLI's output), or to the log, as a warning when it warns
    (also when ``echo`` is a logger's method, such as a pipeline's default ``logger.info``)."""
    log = getattr(echo, "__self__", None) if echo is not None else logger
    if isinstance(log, logging.Logger):
        (log.warning if warns else log.info)(line)
    else:
        echo(line)


__all__ = [
    "CHECK_KEY",
    "HeldOutSignal",
    "SignalSource",
    "check_adaptation",
    "held_out_count",
    "held_out_sample",
    "record_check",
    "recorded_check",
    "run_check",
    "say",
    "summary",
    "warning",
]
