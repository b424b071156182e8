"""Head-to-head report of saved runs: several models over several BEIR datasets, tested against a baseline.

:func:`beir_peft.pipelines.compare.run_comparison` loads the models, evaluates them and caches
their runs; this module only analyses the saved runs. :func:`score_run` recomputes a run's metrics
from its TREC file (so the report reflects exactly the stored rankings).

Each model's nDCG@10 on a dataset is compared with the baseline model's (default: the first listed)
by a two-tailed paired t-test over the dataset's judged queries (:mod:`.significance`, the DDR
paper's test). The report lists nDCG@10 and Recall@100 with the difference to the baseline and its
p-value, and per model the trained parameters and the bytes stored for it beyond the shared backbone.
:func:`write_report` writes ``report.md``, ``report.csv``, ``report.json`` and ``report_ndcg10.png``.

Configuration (YAML or JSON; :meth:`CompareConfig.from_file`)::

    models:                       # name: saved folder, sentence-transformers model, or "bm25"
      zero-shot: sentence-transformers/all-MiniLM-L6-v2
      bm25: bm25
      pt2-dpr: runs/pt2
    datasets: [scifact, msmarco-dl19-5k]
    split: test                   # optional; default test
    baseline: zero-shot           # optional; default: the first model
    search: exact                 # optional; as for ``beir-peft evaluate``
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_open, write_json_atomic
from ..models.precision import ENCODING_DTYPES
from .significance import paired_t_test

logger = logging.getLogger(__name__)

REPORT_METRICS = ("NDCG@10", "Recall@100")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class CompareConfig:
    """What to compare: ``models`` (``{name: spec}``, in report order) on ``datasets``.

    A spec is a saved beir_peft folder, a sentence-transformers model name or folder, or ``"bm25"``.
    """

    models: dict[str, str]
    datasets: list[str]
    split: str = "test"
    baseline: str | None = None
    search: str = "exact"
    batch_size: int = 128
    k_values: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 100, 1000])
    alpha: float = 0.05
    ignore_identical_ids: bool = True
    #: the encoding dtype of every dense model (beir_peft.models.precision); BM25 ignores it
    dtype: str = "float32"

    def __post_init__(self):
        if not self.models:
            raise ConfigError("compare: no models given")
        if not self.datasets:
            raise ConfigError("compare: no datasets given")
        for name, spec in self.models.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(
                    f"compare: model name {name!r} must be letters, digits and . _ + - (it names files)"
                )
            if not isinstance(spec, str) or not spec.strip():
                raise ConfigError(f"compare: model {name!r} needs a folder, model name or 'bm25'")
        if len(set(self.datasets)) != len(self.datasets):
            raise ConfigError(f"compare: a dataset is listed twice in {self.datasets}")
        if self.baseline is None:
            self.baseline = next(iter(self.models))
        if self.baseline not in self.models:
            raise ConfigError(
                f"compare: baseline {self.baseline!r} is not one of the models {list(self.models)}"
            )
        if 10 not in self.k_values or 100 not in self.k_values:
            raise ConfigError(
                "compare: k_values must include 10 and 100 (the report's nDCG@10 and Recall@100)"
            )
        if self.dtype not in ENCODING_DTYPES:
            raise ConfigError(
                f"compare: dtype must be one of {', '.join(ENCODING_DTYPES)}, got {self.dtype!r}"
            )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"compare: alpha must be in (0, 1), got {self.alpha}")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CompareConfig:
        """Read a YAML (or JSON) file; one-line :class:`ConfigError` naming the file on any problem."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" line {where.line + 1}" if where is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with 'models' and 'datasets'")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        models = data.get("models")
        if isinstance(models, list):  # a list of specs: each named by itself
            models = {default_name(str(spec)): str(spec) for spec in models}
        if not isinstance(models, dict):
            raise ConfigError(f"{path}: 'models' must map names to models")
        datasets = data.get("datasets")
        if isinstance(datasets, str):
            datasets = [datasets]
        if not isinstance(datasets, list):
            raise ConfigError(f"{path}: 'datasets' must be a list of dataset names or folders")
        try:
            return cls(**{**data, "models": {str(k): str(v) for k, v in models.items()},
                          "datasets": [str(d) for d in datasets]})  # fmt: skip
        except TypeError as err:
            raise ConfigError(f"{path}: {err}") from err
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err


def default_name(spec: str) -> str:
    """A file-safe name for an unnamed model spec: its last path part."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "-", Path(spec.rstrip("/")).name) or "model"
    return name if _NAME.match(name) else f"m-{name}"


# ------------------------------------------------------------------------------- results
@dataclass
class PairResult:
    """One model on one dataset: metrics, per-query nDCG@10, and whether the run came from the cache."""

    model: str
    dataset: str
    metrics: dict[str, float]
    per_query_ndcg10: dict[str, float]
    cached: bool
    run_file: str
    seconds: float | None = None


@dataclass
class Comparison:
    """Everything the report shows: the config, per-model facts, per-pair results and tests."""

    config: CompareConfig
    facts: dict[str, dict[str, Any]]
    results: dict[str, dict[str, PairResult]]  # dataset -> model -> result
    tests: dict[str, dict[str, dict[str, float]]]  # dataset -> model -> PairedTest.to_dict()
    judged_queries: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "models": self.facts,
            "datasets": {
                dataset: {
                    "judged_queries": self.judged_queries[dataset],
                    "models": {
                        model: {
                            "metrics": {m: pair.metrics[m] for m in REPORT_METRICS},
                            "all_metrics": pair.metrics,
                            "vs_baseline": self.tests[dataset].get(model),
                            "run_file": pair.run_file,
                            "cached": pair.cached,
                        }
                        for model, pair in per_model.items()
                    },
                }
                for dataset, per_model in self.results.items()
            },
        }


def score_run(model: str, data, run, config: CompareConfig, run_path: Path, cached: bool) -> PairResult:
    """The metrics and per-query nDCG@10 of a saved ``run`` of ``model`` on ``data`` (a BeirDataset)."""
    from ..evaluation import evaluate_run, per_query_ndcg

    metrics = evaluate_run(data.qrels, run, config.k_values, config.ignore_identical_ids)
    per_query = per_query_ndcg(data.qrels, run, 10, config.ignore_identical_ids)
    return PairResult(model, data.name, metrics, per_query, cached, str(run_path))


def compare_to_baseline(
    config: CompareConfig,
    facts: dict[str, dict[str, Any]],
    results: dict[str, dict[str, PairResult]],
    datasets: Mapping[str, Any],
) -> Comparison:
    """The paired t-test of every model's per-query nDCG@10 against the baseline's, per dataset
    (``datasets``: name -> BeirDataset), over the queries with a positive judgement."""
    tests: dict[str, dict[str, dict[str, float]]] = {}
    judged: dict[str, int] = {}
    for dataset_name, data in datasets.items():
        queries = sorted(qid for qid, rels in data.qrels.items() if any(v > 0 for v in rels.values()))
        queries = [q for q in queries if q in data.queries]
        judged[dataset_name] = len(queries)
        base = results[dataset_name][config.baseline].per_query_ndcg10
        tests[dataset_name] = {
            model: paired_t_test(base, pair.per_query_ndcg10, queries).to_dict()
            for model, pair in results[dataset_name].items()
            if model != config.baseline
        }
    return Comparison(config, facts, results, tests, judged)


# ------------------------------------------------------------------------------- the report
def _cell(comparison: Comparison, dataset: str, model: str, markdown: bool) -> str:
    pair = comparison.results[dataset][model]
    text = f"{pair.metrics['NDCG@10']:.4f} / {pair.metrics['Recall@100']:.4f}"
    test = comparison.tests[dataset].get(model)
    if test is not None:
        mark = "*" if test["p_value"] < comparison.config.alpha else ""
        if markdown and mark:
            mark = "\\*"
        text += f" ({test['delta']:+.4f}{mark}, p={test['p_value']:.3f})"
    return text


def format_markdown(comparison: Comparison) -> str:
    """The report table: one row per model, one column per dataset, then parameters and bytes."""
    config = comparison.config
    header = ["model", "method"] + [f"{d} nDCG@10 / R@100" for d in config.datasets]
    header += ["trained params", "stored bytes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in config.models:
        facts = comparison.facts[model]
        cells = [f"`{model}`", str(facts["method"])]
        cells += [_cell(comparison, dataset, model, True) for dataset in config.datasets]
        cells += [f"{facts['trained_parameters']:,}", f"{facts['artifact_bytes']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    judged = ", ".join(f"{d}: {n}" for d, n in comparison.judged_queries.items())
    lines += [
        "",
        f"Split `{config.split}`, search `{config.search}`. In brackets: nDCG@10 minus the baseline "
        f"`{config.baseline}`'s, and the two-tailed paired t-test p-value over the judged queries "
        f"({judged}); \\* marks p < {config.alpha:g}. Stored bytes: what the model adds to the shared "
        "backbone (config and weights of a saved folder; 0 for zero-shot and BM25).",
    ]
    return "\n".join(lines) + "\n"


def format_csv(comparison: Comparison) -> str:
    """One row per (dataset, model): metrics, difference to the baseline, p-value, parameters, bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "model", "method", "ndcg@10", "recall@100", "delta_ndcg@10", "p_value",
                     "significant", "trained_parameters", "stored_bytes", "cached"])  # fmt: skip
    for dataset in comparison.config.datasets:
        for model, pair in comparison.results[dataset].items():
            facts, test = comparison.facts[model], comparison.tests[dataset].get(model)
            writer.writerow([
                dataset, model, facts["method"], f"{pair.metrics['NDCG@10']:.6f}",
                f"{pair.metrics['Recall@100']:.6f}",
                f"{test['delta']:.6f}" if test else "", f"{test['p_value']:.6g}" if test else "",
                (test["p_value"] < comparison.config.alpha) if test else "",
                facts["trained_parameters"], facts["artifact_bytes"], pair.cached,
            ])  # fmt: skip
    return buffer.getvalue()


def plot_comparison(comparison: Comparison, path: str | os.PathLike) -> None:
    """Grouped bar chart of nDCG@10: datasets on the x axis, one bar per model, each labelled with its
    value (``*``: significantly different from the baseline)."""
    from ._plotting import new_figure, save_png

    config = comparison.config
    models, datasets = list(config.models), list(config.datasets)
    figure = new_figure(max(5.0, 1.2 + 0.5 * len(models) * len(datasets)), 3.8)
    axes = figure.add_subplot()
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        xs = [d + (index - (len(models) - 1) / 2) * width for d in range(len(datasets))]
        values = [comparison.results[d][model].metrics["NDCG@10"] for d in datasets]
        bars = axes.bar(xs, values, width=width * 0.95, label=model)
        stars = [
            "*" if (t := comparison.tests[d].get(model)) is not None and t["p_value"] < config.alpha else ""
            for d in datasets
        ]
        axes.bar_label(bars, [f"{v:.3f}{star}" for v, star in zip(values, stars, strict=True)], fontsize=7)
    axes.set_xticks(range(len(datasets)), datasets)
    axes.set_ylabel("nDCG@10")
    axes.set_ylim(0, min(1.0, 1.15 * max(p.metrics["NDCG@10"] for r in comparison.results.values()
                                          for p in r.values()) + 0.02))  # fmt: skip
    axes.set_title(f"nDCG@10 ({config.split}); * p < {config.alpha:g} vs {config.baseline}")
    axes.legend(fontsize=8, ncols=min(4, len(models)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    save_png(figure, path)


def write_report(comparison: Comparison, output_dir: str | os.PathLike, plot: bool = True) -> list[Path]:
    """Write report.md, report.csv, report.json (and report_ndcg10.png) atomically; returns the paths."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("report.md", format_markdown(comparison)), ("report.csv", format_csv(comparison))):
        with atomic_open(output / name, "w") as handle:
            handle.write(text)
        written.append(output / name)
    write_json_atomic(output / "report.json", comparison.to_json())
    written.append(output / "report.json")
    if plot:
        plot_comparison(comparison, output / "report_ndcg10.png")
        written.append(output / "report_ndcg10.png")
    return written


__all__ = [
    "CompareConfig",
    "Comparison",
    "compare_to_baseline",
    "default_name",
    "PairResult",
    "format_csv",
    "format_markdown",
    "plot_comparison",
    "score_run",
    "write_report",
]
