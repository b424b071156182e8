"""Head-to-head report: several models over several BEIR datasets with BEIR's evaluator, cached.

:func:`run_comparison` evaluates every (model, dataset) pair through the same path as ``beir-peft
evaluate`` (:func:`beir_peft.evaluation.evaluate_retriever`), keeps each ranking as a TREC run file
under ``output_dir/runs/<model>/<dataset>.<split>.trec`` with a JSON note of what produced it, and
on a rerun re-uses every run whose model (config and weight bytes, or name), dataset and search
settings are unchanged: only new or changed pairs are computed. Metrics are always recomputed from
the run files, so the report reflects exactly the stored rankings.

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
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_open, write_json_atomic
from ..registry import SINGLE_VECTOR, retriever_kind
from .significance import paired_t_test

logger = logging.getLogger(__name__)

REPORT_METRICS = ("NDCG@10", "Recall@100")
RUNS_DIR = "runs"
CACHE_FORMAT = 2
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
            models = {_default_name(str(spec)): str(spec) for spec in models}
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


def _default_name(spec: str) -> str:
    """A file-safe name for an unnamed model spec: its last path part."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "-", Path(spec.rstrip("/")).name) or "model"
    return name if _NAME.match(name) else f"m-{name}"


# ------------------------------------------------------------------------------- model facts
def model_facts(spec: str) -> dict[str, Any]:
    """What kind of model ``spec`` is, the parameters it trained and the bytes stored for it.

    ``trained_parameters``/``artifact_bytes`` are 0 for a zero-shot model and BM25: nothing beyond the
    shared backbone (or index) is stored. A saved folder counts its config and weights files.
    """
    from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, is_retriever_folder
    from ..models.loading import BM25_MODEL

    path = Path(spec).expanduser()
    if spec == BM25_MODEL and not path.exists():
        return {"kind": "bm25", "method": "bm25", "trained_parameters": 0, "artifact_bytes": 0}
    if is_retriever_folder(path):
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        return {
            "kind": "saved",
            "method": config.get("method"),
            "backbone": config.get("backbone"),
            "trained_parameters": int(config.get("trainable_parameters") or 0),
            "total_parameters": config.get("total_parameters"),
            "artifact_bytes": sum((path / name).stat().st_size for name in (CONFIG_NAME, WEIGHTS_NAME)),
        }
    return {
        "kind": "sentence-transformers",
        "method": "zero-shot",
        "trained_parameters": 0,
        "artifact_bytes": 0,
    }


def model_identity(spec: str) -> dict[str, Any]:
    """What decides whether a cached run of ``spec`` is still valid: a digest of a saved folder's
    config and weight bytes, a digest of a local sentence-transformers folder's files, or the name."""
    from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, is_retriever_folder

    path = Path(spec).expanduser()
    if is_retriever_folder(path):
        return {"spec": spec, "sha256": _digest_files([path / CONFIG_NAME, path / WEIGHTS_NAME])}
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
        return {"spec": spec, "sha256": _digest_files(files)}
    return {"spec": spec}


def _digest_files(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- running
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


def run_comparison(
    config: CompareConfig,
    output_dir: str | os.PathLike,
    device: str | None = None,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] = lambda message: logger.info(message),
    adopt: Mapping[tuple[str, str], str | os.PathLike] | None = None,
) -> Comparison:
    """Evaluate every model on every dataset (re-using valid cached runs), then test against the baseline.

    ``adopt`` maps ``(model name, dataset)`` to an existing TREC run of that model on that dataset
    (e.g. from ``beir-peft evaluate --run-file`` with the same search and depth): it is copied into
    the cache instead of being recomputed, and the note records where it came from.
    """
    adopt = dict(adopt or {})
    unknown = [pair for pair in adopt if pair[0] not in config.models or pair[1] not in config.datasets]
    if unknown:
        raise ConfigError(
            f"compare: cannot adopt a run for {unknown[0][0]!r} on {unknown[0][1]!r}: not a model and dataset of the comparison"
        )
    from ..data import load_dataset
    from ..evaluation import evaluate_retriever, write_run_file
    from ..models.loading import load_model
    from .runs import read_run_file

    output = Path(output_dir)
    facts = {name: model_facts(spec) for name, spec in config.models.items()}
    identities = {name: model_identity(spec) for name, spec in config.models.items()}
    datasets = {}
    for name in config.datasets:
        datasets[name] = load_dataset(name, split=config.split)
    loaded: dict[str, Any] = {}
    results: dict[str, dict[str, PairResult]] = {name: {} for name in config.datasets}
    for model_name, spec in config.models.items():
        for dataset_name, data in datasets.items():
            folder = output / RUNS_DIR / model_name
            run_path = folder / f"{_file_part(data.name)}.{config.split}.trec"
            note_path = run_path.with_suffix(".json")
            key = _cache_key(identities[model_name], data, config)
            if (model_name, dataset_name) in adopt and not _cache_valid(note_path, run_path, key):
                source = Path(adopt[(model_name, dataset_name)])
                read_run_file(source)  # a readable TREC run, or a one-line error naming the file
                folder.mkdir(parents=True, exist_ok=True)
                with atomic_open(run_path, "w") as handle:
                    handle.write(source.read_text(encoding="utf-8"))
                write_json_atomic(note_path, {"key": key, "adopted_from": str(source.resolve())})
                echo(f"{model_name} on {data.name}: adopted {source}")
            seconds = None
            cached = _cache_valid(note_path, run_path, key)
            if cached:
                echo(f"{model_name} on {data.name}: cached run {run_path}")
            else:
                if model_name not in loaded:
                    loaded.clear()  # one model in memory at a time
                    loaded[model_name] = load_model(spec, device=device)
                echo(f"{model_name} on {data.name}: evaluating")
                model = loaded[model_name]
                result = evaluate_retriever(
                    model,
                    data.corpus,
                    data.queries,
                    data.qrels,
                    k_values=config.k_values,
                    search=config.search if _single_vector(model) else "exact",
                    batch_size=config.batch_size,
                    ignore_identical_ids=config.ignore_identical_ids,
                    show_progress_bar=show_progress_bar,
                )
                folder.mkdir(parents=True, exist_ok=True)
                write_run_file(result.results, run_path, run_name=model_name)
                seconds = result.timings["total"]
                write_json_atomic(note_path, {"key": key, "timings": result.timings, "config": result.config})
            pair = _score(model_name, data, read_run_file(run_path), config, run_path, cached)
            pair.seconds = seconds
            results[dataset_name][model_name] = pair

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


def _single_vector(model: Any) -> bool:
    """Dense single-vector models take ``config.search``; BM25 and MaxSim models search their own way."""
    return retriever_kind(model) == SINGLE_VECTOR


def _cache_key(identity: dict[str, Any], data, config: CompareConfig) -> dict[str, Any]:
    """What a cached run must match: the model's identity, the dataset split and its contents (an
    edited corpus or query set under the same name and counts is a new run), the search and depth."""
    from ..search.corpus import corpus_digest

    doc_ids = list(data.corpus)
    queries = hashlib.sha256()
    for qid in sorted(data.queries):
        for part in (qid, data.queries[qid]):
            encoded = str(part).encode("utf-8")
            queries.update(len(encoded).to_bytes(8, "little") + encoded)
    return {
        "format": CACHE_FORMAT,
        "model": identity,
        "dataset": {
            "name": data.name,
            "path": str(data.path),
            "split": config.split,
            "docs": len(data.corpus),
            "queries": len(data.queries),
            "corpus_sha256": corpus_digest(doc_ids, [data.corpus[d] for d in doc_ids]),
            "queries_sha256": queries.hexdigest(),
        },  # fmt: skip
        "search": config.search,
        "top_k": max(config.k_values),
    }


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def _cache_valid(note_path: Path, run_path: Path, key: Mapping[str, Any]) -> bool:
    if not (note_path.is_file() and run_path.is_file()):
        return False
    try:
        note = json.loads(note_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(note, dict) and note.get("key") == json.loads(json.dumps(key))


def _score(model: str, data, run, config: CompareConfig, run_path: Path, cached: bool) -> PairResult:
    from ..evaluation import evaluate_run, per_query_ndcg

    metrics = evaluate_run(data.qrels, run, config.k_values, config.ignore_identical_ids)
    per_query = per_query_ndcg(data.qrels, run, 10, config.ignore_identical_ids)
    return PairResult(model, data.name, metrics, per_query, cached, str(run_path))


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
    "PairResult",
    "format_csv",
    "format_markdown",
    "model_facts",
    "model_identity",
    "plot_comparison",
    "run_comparison",
    "write_report",
]
