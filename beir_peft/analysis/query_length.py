"""Query-length robustness: nDCG@10 per bucket of query length (Tam et al. 2022, section 7.2, Figure 4).

A query's length is the number of whitespace-separated tokens of its text (``len(text.split())``).
Queries are split into (at most) ``num_buckets`` buckets of about equal size by quantile edges
computed on the query set (the judged queries):

* the upper edges are the ``j/B`` quantiles of the lengths (``j = 1 .. B-1``) by the inverted-CDF
  rule (the length at position ``ceil(j * n / B)``, 1-based, of the sorted lengths) and the longest
  length, each kept once;
* a bucket holds the lengths in ``(previous upper edge, its upper edge]``, the first one from the
  shortest length on: every query lands in exactly one bucket, and queries of the same length
  always share a bucket;
* edges that coincide because of ties are merged, so a bucket is never empty, but there can be
  fewer than ``B`` buckets and their sizes can differ (a length shared by many queries stays in one
  bucket rather than being split to even the sizes). Example: lengths ``1 1 1 1 1 1 2 3 4 5`` in 5
  buckets give edges ``[1, 1, 3, 5]`` (see :func:`bucket_edges`), buckets ``{1}``, ``{2, 3}``, ``{4, 5}``.

Per bucket and model the score is the mean per-query nDCG@10 (pytrec_eval, through
:func:`beir_peft.evaluation.per_query_ndcg`); a judged query missing from a run scores 0 there (and
is counted in ``missing``), so every model is averaged over the same queries.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError, DatasetError

DEFAULT_BUCKETS = 5

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def query_length(text: str) -> int:
    """Whitespace token count of a query."""
    return len(text.split())


def bucket_edges(lengths: Sequence[int], num_buckets: int = DEFAULT_BUCKETS) -> list[int]:
    """Bucket edges ``[min, u_0, u_1, ...]``: bucket ``b`` holds the lengths in ``(u_{b-1}, u_b]``, the first ``[min, u_0]``.

    The upper edges ``u_b`` are the distinct values among the ``j/B`` quantiles (``j = 1 .. B-1``,
    inverted-CDF rule) and the longest length, increasing; ``edges[0] == edges[1]`` when the first
    quantile is the shortest length. One distinct length gives ``[length, length]`` (one bucket).
    """
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
        raise ConfigError(f"the number of buckets must be a positive integer, got {num_buckets!r}")
    if not lengths:
        raise ConfigError("no query lengths to bucket")
    ordered = sorted(int(length) for length in lengths)
    n = len(ordered)
    quantiles = [ordered[math.ceil(j * n / num_buckets) - 1] for j in range(1, num_buckets)]
    return [ordered[0], *sorted(set(quantiles) | {ordered[-1]})]


def assign_bucket(length: int, edges: Sequence[int]) -> int:
    """Index of the bucket holding ``length`` (see :func:`bucket_edges`)."""
    if length < edges[0] or length > edges[-1]:
        raise ConfigError(f"length {length} is outside the bucket range {edges[0]}..{edges[-1]}")
    for b in range(len(edges) - 1):
        if length <= edges[b + 1]:
            return b
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class LengthBucket:
    """One bucket: its edges (``lower`` exclusive except for the first bucket, ``upper`` inclusive),
    the shortest and longest query in it, its query count and each model's mean nDCG@k."""

    index: int
    lower: int
    upper: int
    min_length: int
    max_length: int
    num_queries: int
    ndcg: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return (
            str(self.min_length)
            if self.min_length == self.max_length
            else f"{self.min_length}-{self.max_length}"
        )


@dataclass
class QueryLengthResult:
    """nDCG@k per length bucket for several models.

    ``overall``: each model's mean over all bucketed queries; ``missing``: judged queries absent
    from each run (scored 0); ``requested_buckets``: the ``num_buckets`` asked for (ties can merge some).
    """

    buckets: list[LengthBucket]
    models: list[str]
    k: int
    requested_buckets: int
    num_queries: int
    overall: dict[str, float]
    missing: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for bucket, obj in zip(self.buckets, data["buckets"], strict=True):
            obj["label"] = bucket.label
        return data

    def to_markdown(self) -> str:
        """A Markdown table: one row per bucket (length range, query count, nDCG@k per model), then all."""
        metric = f"nDCG@{self.k}"
        header = ["bucket", "query length", "queries", *(f"{name} {metric}" for name in self.models)]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * 3 + ["---:"] * len(self.models)) + "|",
        ]
        for bucket in self.buckets:
            cells = [str(bucket.index + 1), bucket.label, str(bucket.num_queries)]
            cells += [f"{bucket.ndcg[name]:.4f}" for name in self.models]
            lines.append("| " + " | ".join(cells) + " |")
        low, high = self.buckets[0].min_length, self.buckets[-1].max_length
        cells = ["all", f"{low}-{high}" if low != high else str(low), str(self.num_queries)]
        cells += [f"{self.overall[name]:.4f}" for name in self.models]
        lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def query_length_analysis(
    queries: Mapping[str, str],
    qrels: Qrels,
    runs: Mapping[str, Run],
    *,
    num_buckets: int = DEFAULT_BUCKETS,
    k: int = 10,
    ignore_identical_ids: bool = True,
) -> QueryLengthResult:
    """Bucket the judged queries by length and average each run's per-query nDCG@k per bucket.

    ``queries``: ``{qid: text}``; the query set is the queries with both a text and qrels.
    ``runs``: ``{model name: {qid: {docid: score}}}``. Raises :class:`DatasetError` when no judged
    query has a text or a run shares no query with the qrels.
    """
    from ..evaluation import per_query_ndcg

    if not runs:
        raise ConfigError("no runs to analyse")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    qids = [qid for qid in queries if qid in qrels]
    if not qids:
        raise DatasetError("no judged query has a text: the queries and the qrels share no id")
    lengths = {qid: query_length(queries[qid]) for qid in qids}
    edges = bucket_edges(list(lengths.values()), num_buckets)
    members: list[list[str]] = [[] for _ in range(len(edges) - 1)]
    for qid in qids:
        members[assign_bucket(lengths[qid], edges)].append(qid)

    judged = {qid: qrels[qid] for qid in qids}
    scores: dict[str, dict[str, float]] = {}
    missing: dict[str, int] = {}
    for name, run in runs.items():
        subset = {qid: run[qid] for qid in qids if qid in run}
        if not subset:
            raise DatasetError(
                f"run {name!r}: no query of the run has relevance judgements (qrels); check the split"
            )
        per_query = per_query_ndcg(judged, subset, k, ignore_identical_ids)
        scores[name] = {qid: per_query.get(qid, 0.0) for qid in qids}
        missing[name] = len(qids) - len(subset)

    buckets = []
    for b, group in enumerate(members):
        group_lengths = [lengths[qid] for qid in group]
        buckets.append(
            LengthBucket(
                index=b,
                lower=edges[b],
                upper=edges[b + 1],
                min_length=min(group_lengths),
                max_length=max(group_lengths),
                num_queries=len(group),
                ndcg={name: sum(scores[name][qid] for qid in group) / len(group) for name in runs},
            )
        )
    return QueryLengthResult(
        buckets=buckets,
        models=list(runs),
        k=k,
        requested_buckets=num_buckets,
        num_queries=len(qids),
        overall={name: sum(values.values()) / len(values) for name, values in scores.items()},
        missing=missing,
    )


def plot_query_length(
    result: QueryLengthResult, path: str | os.PathLike, *, title: str | None = None
) -> None:
    """Write a PNG like Tam et al.'s Figure 4: nDCG@k per bucket (lines, left axis) and queries per bucket (bars, right axis).

    Needs matplotlib (``pip install "beir-peft[plots]"``; a missing one is a :class:`ConfigError`);
    written atomically.
    """
    from ._plotting import new_figure, save_png

    figure = new_figure(max(5.0, 1.1 * len(result.buckets) + 2.5), 3.8)
    ax = figure.subplots()
    counts_ax = ax.twinx()
    xs = list(range(len(result.buckets)))
    counts_ax.bar(
        xs,
        [b.num_queries for b in result.buckets],
        width=0.6,
        color="lightgray",
        edgecolor="gray",
        label="#queries",
    )
    for x, bucket in zip(xs, result.buckets, strict=True):
        counts_ax.annotate(
            str(bucket.num_queries),
            (x, bucket.num_queries),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="dimgray",
        )
    counts_ax.set_ylabel("#queries")
    counts_ax.set_ylim(0, max(b.num_queries for b in result.buckets) * 1.25)
    # the lines in front of the bars
    ax.set_zorder(counts_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    for i, name in enumerate(result.models):
        ax.plot(
            xs,
            [b.ndcg[name] for b in result.buckets],
            marker="o",
            color=f"C{i}",
            label=f"{name} (all: {result.overall[name]:.3f})",
        )
    ax.set_xticks(xs, [b.label for b in result.buckets])
    ax.set_xlabel("query length (whitespace tokens)")
    ax.set_ylabel(f"nDCG@{result.k}")
    ax.set_ylim(0, 1.05)
    handles, labels = ax.get_legend_handles_labels()
    bar_handles, bar_labels = counts_ax.get_legend_handles_labels()
    figure.legend(
        handles + bar_handles,
        labels + bar_labels,
        loc="outside lower center",
        ncol=len(labels) + 1,
        fontsize=7,
    )
    if title:
        ax.set_title(title)
    save_png(figure, path)
