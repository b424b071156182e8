"""Expected calibration error (ECE) of a retriever's ranking, and reliability diagrams.

Tam et al. (2022, section 7.1) cast ranking as classification: per query, take the top ``k = 5``
retrieved documents, apply a softmax over their retrieval scores, and measure the ECE of
Naeini et al. (2015) over ``M`` equal-width confidence bins (default 10)::

    ECE = sum_m (|B_m| / n) * |acc(B_m) - conf(B_m)|

Two readings of "5-class classification" are offered (``definition``):

``"pooled"`` (default; what the authors' code does)
    every one of the ``k`` (probability, relevant) pairs of every query is a binary sample: its
    confidence is the document's softmax probability, its outcome whether the document is relevant.
    ``n = k * queries``.
``"top-label"`` (the paper's text, Guo et al.'s top-label ECE)
    one sample per query: confidence = the largest softmax probability, correct = whether that
    top-ranked document is relevant. ``n = queries``.

Rules:

* relevant means a qrels score ``> 0``; a retrieved document absent from the qrels is not relevant;
* queries of the run without qrels are ignored; a judged query with fewer than ``k`` retrieved
  documents (or absent from the run) has no "valid top-k prediction" and is skipped (counted in
  ``num_skipped``); with ``ignore_identical_ids`` (BEIR's convention) a document whose id equals
  the query id is dropped before taking the top ``k``;
* the top ``k`` are the ``k`` highest scores, ties broken by document id (as
  :func:`beir_peft.evaluation.write_run_file` orders them); the softmax is over
  ``score / temperature``;
* bins are ``(lo, hi]`` with edges ``m / M``: a confidence exactly on an edge belongs to the bin that
  edge closes (0.3 goes to ``(0.2, 0.3]`` with 10 bins), and 0 (a softmax underflow) goes to the
  first bin, which is ``[0, 1/M]``. This is Guo et al.'s ``conf > lo and conf <= hi`` rule, which the
  authors' code follows, plus the 0 that rule loses;
* empty bins are skipped (their weight ``|B_m| / n`` is 0); their accuracy and confidence are ``None``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetError

DEFINITIONS = ("pooled", "top-label")
DEFAULT_DEFINITION = "pooled"
DEFAULT_BINS = 10
DEFAULT_TOP_K = 5

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


@dataclass
class CalibrationResult:
    """The ECE of one run and its reliability-diagram data.

    Attributes:
        ece: expected calibration error, in [0, 1].
        definition: ``"pooled"`` or ``"top-label"``.
        bin_edges: the ``M + 1`` edges ``0, 1/M, ..., 1``; bin ``m`` is ``(bin_edges[m], bin_edges[m+1]]``
            (the first one also holds 0).
        counts: samples per bin.
        accuracy: fraction of relevant (pooled) or correct (top-label) samples per bin; ``None`` if empty.
        confidence: mean confidence per bin; ``None`` if empty.
        num_queries: queries that contributed (judged, with a full top ``k``).
        num_samples: ``n``: ``k * num_queries`` (pooled) or ``num_queries`` (top-label).
        num_skipped: judged queries left out for lack of ``k`` retrieved documents.
        top_k, temperature: the settings used.
    """

    ece: float
    definition: str
    bin_edges: list[float]
    counts: list[int]
    accuracy: list[float | None]
    confidence: list[float | None]
    num_queries: int
    num_samples: int
    num_skipped: int = 0
    top_k: int = DEFAULT_TOP_K
    temperature: float = 1.0

    @property
    def num_bins(self) -> int:
        return len(self.counts)

    @property
    def overall_accuracy(self) -> float:
        """Accuracy over all samples (pooled: the fraction of relevant documents in the top ``k``)."""
        hits = sum(c * a for c, a in zip(self.counts, self.accuracy, strict=True) if a is not None)
        return hits / self.num_samples if self.num_samples else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "num_bins": self.num_bins}


def _check_settings(num_bins: int, temperature: float, top_k: int, definition: str) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ConfigError(f"the number of bins must be a positive integer, got {num_bins!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"the temperature must be a positive number, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    if definition not in DEFINITIONS:
        raise ConfigError(f"unknown ECE definition {definition!r}; use one of {', '.join(DEFINITIONS)}")


def bin_edges(num_bins: int = DEFAULT_BINS) -> np.ndarray:
    """The ``num_bins + 1`` equal-width edges ``m / num_bins`` (each the float nearest to the fraction)."""
    return np.arange(num_bins + 1, dtype=np.float64) / num_bins


def assign_bins(confidences: Sequence[float] | np.ndarray, num_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin index of each confidence: bin ``m`` is ``(m/M, (m+1)/M]``, and 0 goes to bin 0.

    A confidence exactly on an edge goes to the lower bin (the one the edge closes).
    """
    values = np.asarray(confidences, dtype=np.float64)
    if values.size and (np.isnan(values).any() or values.min() < 0 or values.max() > 1):
        raise ConfigError("confidences must lie in [0, 1]")
    # searchsorted(side="left") gives i with edges[i-1] < c <= edges[i]
    index = np.searchsorted(bin_edges(num_bins), values, side="left") - 1
    return np.clip(index, 0, num_bins - 1)


def ece_from_samples(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    num_bins: int = DEFAULT_BINS,
) -> tuple[float, list[int], list[float | None], list[float | None]]:
    """``(ece, counts, accuracy, confidence)`` of binary samples over ``num_bins`` equal-width bins.

    Empty bins are skipped (accuracy and confidence ``None``). Raises :class:`ConfigError` when
    there are no samples or the two sequences differ in length.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise ConfigError("confidences and outcomes must be two sequences of the same length")
    if conf.size == 0:
        raise ConfigError("no samples to compute a calibration error on")
    index = assign_bins(conf, num_bins)
    counts = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=num_bins)
    hit_sum = np.bincount(index, weights=hit, minlength=num_bins)
    n = conf.size
    ece = 0.0
    accuracy: list[float | None] = []
    confidence: list[float | None] = []
    for count, c_sum, h_sum in zip(counts, conf_sum, hit_sum, strict=True):
        if count == 0:
            accuracy.append(None)
            confidence.append(None)
            continue
        acc, mean_conf = h_sum / count, c_sum / count
        accuracy.append(float(acc))
        confidence.append(float(mean_conf))
        ece += (count / n) * abs(acc - mean_conf)
    return float(ece), [int(c) for c in counts], accuracy, confidence


def softmax(scores: Sequence[float] | np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(scores / temperature)``, computed stably (the maximum is subtracted first)."""
    logits = np.asarray(scores, dtype=np.float64) / temperature
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def top_k_probabilities(
    hits: Mapping[str, float], top_k: int = DEFAULT_TOP_K, temperature: float = 1.0
) -> tuple[list[str], np.ndarray]:
    """The ``top_k`` best-scored doc ids (ties by doc id) and the softmax of their scores."""
    ranked = sorted(hits.items(), key=lambda item: (-float(item[1]), item[0]))[:top_k]
    doc_ids = [doc_id for doc_id, _ in ranked]
    scores = [float(score) for _, score in ranked]
    if not all(math.isfinite(score) for score in scores):
        raise DatasetError("retrieval scores must be finite numbers")
    return doc_ids, softmax(scores, temperature)


def calibration(
    qrels: Qrels,
    run: Run,
    *,
    num_bins: int = DEFAULT_BINS,
    definition: str = DEFAULT_DEFINITION,
    temperature: float = 1.0,
    top_k: int = DEFAULT_TOP_K,
    ignore_identical_ids: bool = True,
    name: str | None = None,
) -> CalibrationResult:
    """ECE of ``run`` (``{qid: {docid: score}}``) against ``qrels`` (``{qid: {docid: int}}``).

    See the module docstring for the two definitions and the rules. ``name`` only labels error
    messages. Raises :class:`DatasetError` when no judged query has ``top_k`` retrieved documents.
    """
    _check_settings(num_bins, temperature, top_k, definition)
    confidences: list[float] = []
    outcomes: list[bool] = []
    used = skipped = 0
    for qid, judged in qrels.items():
        hits = run.get(qid)
        if hits is None:
            skipped += 1
            continue
        if ignore_identical_ids:
            hits = {doc_id: score for doc_id, score in hits.items() if doc_id != qid}
        if len(hits) < top_k:
            skipped += 1
            continue
        try:
            doc_ids, probs = top_k_probabilities(hits, top_k, temperature)
        except DatasetError as exc:
            raise DatasetError(f"{_label(name)}query {qid!r}: {exc}") from None
        relevant = [judged.get(doc_id, 0) > 0 for doc_id in doc_ids]
        if definition == "pooled":
            confidences.extend(float(p) for p in probs)
            outcomes.extend(relevant)
        else:
            top = int(np.argmax(probs))  # the first maximum: rank order
            confidences.append(float(probs[top]))
            outcomes.append(relevant[top])
        used += 1
    if used == 0:
        raise DatasetError(
            f"{_label(name)}no judged query has {top_k} retrieved documents "
            f"({len(qrels)} judged queries, {sum(qid in qrels for qid in run)} of them in the run); "
            "check the dataset split and the run file"
        )
    ece, counts, accuracy, confidence = ece_from_samples(confidences, outcomes, num_bins)
    return CalibrationResult(
        ece=ece,
        definition=definition,
        bin_edges=[float(edge) for edge in bin_edges(num_bins)],
        counts=counts,
        accuracy=accuracy,
        confidence=confidence,
        num_queries=used,
        num_samples=len(confidences),
        num_skipped=skipped,
        top_k=top_k,
        temperature=float(temperature),
    )


def _label(name: str | None) -> str:
    return f"run {name!r}: " if name else ""


def format_calibration_table(results: Mapping[str, CalibrationResult]) -> str:
    """A fixed-width table: one row per model with its ECE, accuracy, queries, samples and skipped queries."""
    width = max([5, *(len(name) for name in results)])
    lines = [f"{'model':<{width}}  {'ECE':>7}  {'acc':>7}  {'queries':>7}  {'samples':>7}  {'skipped':>7}"]
    for name, result in results.items():
        lines.append(
            f"{name:<{width}}  {result.ece:>7.4f}  {result.overall_accuracy:>7.4f}  {result.num_queries:>7d}  "
            f"{result.num_samples:>7d}  {result.num_skipped:>7d}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Reliability diagram

LAYOUTS = ("side", "overlay")


def plot_reliability(
    results: Mapping[str, CalibrationResult],
    path: str | os.PathLike,
    *,
    layout: str = "side",
    title: str | None = None,
) -> None:
    """Write a reliability diagram of one or more models as a PNG (like Tam et al.'s Figure 3).

    Per bin: a bar up to the accuracy, the gap to the mean confidence shaded, the diagonal of
    perfect calibration dashed, and the bin's sample count above the bar. ``layout="side"`` draws
    one panel per model side by side; ``"overlay"`` draws every model's bars side by side within
    each bin on one panel. Needs matplotlib (``pip install "beir-peft[plots]"``; a missing one is
    a :class:`ConfigError`); written atomically.
    """
    from ._plotting import new_figure, save_png

    if not results:
        raise ConfigError("no calibration results to plot")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    edges_set = {tuple(result.bin_edges) for result in results.values()}
    if len(edges_set) != 1:
        raise ConfigError("every result must use the same bins to be plotted together")
    names = list(results)
    if layout == "side":
        figure = new_figure(3.6 * len(names) + 0.4, 3.9)
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names, strict=True):
            _draw_bins(ax, [(name, results[name])], show_legend=ax is axes[0])
            ax.set_title(f"{name}\nECE {results[name].ece:.4f} ({results[name].definition})", fontsize=9)
    else:
        figure = new_figure(5.2, 4.4)
        ax = figure.subplots()
        _draw_bins(ax, [(name, results[name]) for name in names], show_legend=True)
        ax.set_title(
            ", ".join(f"{name}: ECE {results[name].ece:.4f}" for name in names)
            + f" ({results[names[0]].definition})",
            fontsize=9,
        )
    if title:
        figure.suptitle(title)
    save_png(figure, path)


def _draw_bins(ax: Any, series: list[tuple[str, CalibrationResult]], show_legend: bool) -> None:
    edges = series[0][1].bin_edges
    width = edges[1] - edges[0]
    slot = width / len(series)
    for s, (name, result) in enumerate(series):
        color = f"C{s}"
        first = next(m for m, count in enumerate(result.counts) if count)  # the bin that carries the labels
        for m, count in enumerate(result.counts):
            acc, conf = result.accuracy[m], result.confidence[m]
            if not count or acc is None or conf is None:
                continue
            center = edges[m] + (s + 0.5) * slot
            label_bar = (name if len(series) > 1 else "accuracy") if m == first else None
            ax.bar(
                center,
                acc,
                width=slot * 0.95,
                color=color,
                alpha=0.85,
                edgecolor="black",
                linewidth=0.4,
                label=label_bar,
            )
            low, high = sorted((acc, conf))
            gap_label = "gap to confidence" if (s == 0 and m == first) else None
            ax.bar(
                center,
                high - low,
                bottom=low,
                width=slot * 0.95,
                color="none",
                edgecolor="red",
                hatch="//",
                linewidth=0.6,
                label=gap_label,
            )
            ax.annotate(
                str(count),
                (center, max(acc, conf)),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6,
            )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xticks(edges if len(edges) <= 11 else edges[:: max(1, (len(edges) - 1) // 10)])
    ax.tick_params(labelsize=7)
    if show_legend:
        ax.legend(loc="upper left", fontsize=7)
