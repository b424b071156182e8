"""``beir-peft compare``'s pipeline: evaluate several models on several BEIR datasets, cached.

:func:`run_comparison` evaluates every (model, dataset) pair through the same path as ``beir-peft
evaluate`` (:func:`beir_peft.evaluation.evaluate_retriever`), keeps each ranking as a TREC run file
under ``output_dir/runs/<model>/<dataset>.<split>.trec`` with a JSON note of what produced it, and
on a rerun re-uses every run whose model (config and weight bytes, or name), dataset and search
settings are unchanged: only new or changed pairs are computed. Metrics are always recomputed from
the run files (:func:`beir_peft.analysis.compare.score_run`), and the report
(:mod:`beir_peft.analysis.compare`) is an analysis of those saved runs only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..analysis.compare import CompareConfig, Comparison, PairResult, compare_to_baseline, score_run
from ..analysis.runs import read_run_file
from ..artifacts import CONFIG_NAME, WEIGHTS_NAME, is_retriever_folder
from ..errors import ConfigError
from ..io import atomic_open, write_json_atomic
from ..registry import SINGLE_VECTOR, retriever_kind
from ..retrievers import is_bm25

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
CACHE_FORMAT = 2


def model_facts(spec: str) -> dict[str, Any]:
    """What kind of model ``spec`` is, the parameters it trained and the bytes stored for it.

    ``trained_parameters``/``artifact_bytes`` are 0 for a zero-shot model and BM25: nothing beyond the
    shared backbone (or index) is stored. A saved folder counts its config and weights files.
    """
    path = Path(spec).expanduser()
    if is_bm25(spec):
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
    from ..retrievers import is_bm25, load_retriever

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
                    dtype = config.dtype if not is_bm25(spec) else "float32"
                    loaded[model_name] = load_retriever(spec, device=device, dtype=dtype)
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
            pair = score_run(model_name, data, read_run_file(run_path), config, run_path, cached)
            pair.seconds = seconds
            results[dataset_name][model_name] = pair

    return compare_to_baseline(config, facts, results, datasets)


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
        **({"dtype": config.dtype} if config.dtype != "float32" else {}),  # float32 keeps older caches valid
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


__all__ = ["CACHE_FORMAT", "RUNS_DIR", "model_facts", "model_identity", "run_comparison"]
