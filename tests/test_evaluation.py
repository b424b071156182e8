"""BEIR evaluation wrappers on hand-made qrels/runs and a tiny fake model (no real encoder)."""

from __future__ import annotations

import copy
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import pytrec_eval
import torch

from beir_peft.errors import ConfigError, DatasetError
from beir_peft.evaluation import (
    DEFAULT_K_VALUES,
    EvaluationResult,
    evaluate_retriever,
    evaluate_run,
    format_table,
    library_versions,
    per_query_ndcg,
    write_result_json,
    write_run_file,
)

K = [1, 3, 10]


class CharModel:
    """Bag of characters hashed into 32 dims (``vec[ord(c) % 32] += 1``)."""

    score_function = "dot"

    def _out(self, texts, convert_to_tensor=False, normalize_embeddings=False, **kw):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            for ch in text.lower():
                out[row, ord(ch) % 32] += 1.0
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(out) if convert_to_tensor else out

    def encode_queries(self, queries, batch_size=32, **kw):
        return self._out(list(queries), **kw)

    def encode_corpus(self, corpus, batch_size=32, **kw):
        return self._out([f"{d.get('title') or ''} {d.get('text') or ''}" for d in corpus], **kw)


QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 2, "d4": 0}}
RUN = {
    "q1": {"d9": 3.0, "d1": 2.0, "d8": 1.0, "d2": 0.5},  # first relevant at rank 2
    "q2": {"d3": 5.0, "d4": 4.0, "d7": 1.0},  # relevant at rank 1
}


def test_evaluate_run_matches_pytrec_eval_and_does_not_mutate():
    run = copy.deepcopy(RUN)
    metrics = evaluate_run(QRELS, run, K)
    assert run == RUN
    assert {f"{m}@{k}" for m in ("NDCG", "MAP", "Recall", "P", "MRR") for k in K} <= set(metrics)
    assert metrics["MRR@1"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert metrics["MRR@10"] == pytest.approx(0.75)  # (1/2 + 1) / 2
    assert metrics["P@1"] == pytest.approx(0.5)
    assert metrics["Recall@3"] == pytest.approx(0.75)  # q1: 1 of 2, q2: 1 of 1
    direct = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "map_cut.10"}).evaluate(RUN)
    assert metrics["NDCG@10"] == pytest.approx(np.mean([s["ndcg_cut_10"] for s in direct.values()]), abs=1e-5)
    assert metrics["MAP@10"] == pytest.approx(np.mean([s["map_cut_10"] for s in direct.values()]), abs=1e-5)
    per_query = per_query_ndcg(QRELS, run)
    assert per_query == {q: s["ndcg_cut_10"] for q, s in direct.items()}


def test_perfect_run():
    perfect = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 1.0}}
    metrics = evaluate_run(QRELS, perfect, K)
    assert metrics["NDCG@10"] == 1.0 and metrics["MRR@10"] == 1.0 and metrics["Recall@10"] == 1.0


def test_ignore_identical_ids():
    qrels = {"q1": {"d1": 1, "q1": 1}}
    run = {"q1": {"q1": 9.0, "d1": 1.0}}
    kept = evaluate_run(qrels, run, [1], ignore_identical_ids=False)
    dropped = evaluate_run(qrels, run, [1], ignore_identical_ids=True)
    assert run == {"q1": {"q1": 9.0, "d1": 1.0}}
    assert kept["P@1"] == 1.0 and dropped["P@1"] == 1.0  # "d1" moves up to rank 1
    assert kept["Recall@1"] == 0.5 and dropped["Recall@1"] == 0.5
    qrels = {"q1": {"d1": 1}}
    assert evaluate_run(qrels, run, [1], ignore_identical_ids=False)["MRR@1"] == 0.0
    assert evaluate_run(qrels, run, [1], ignore_identical_ids=True)["MRR@1"] == 1.0
    assert per_query_ndcg(qrels, run, ignore_identical_ids=True)["q1"] == 1.0
    assert per_query_ndcg(qrels, run, ignore_identical_ids=False)["q1"] < 1.0


def test_evaluate_run_mrr_uses_judged_queries_only():
    run = {**RUN, "q_unjudged": {"d1": 1.0}}
    metrics = evaluate_run({**QRELS}, run, K)
    assert metrics["MRR@10"] == pytest.approx(0.75)
    with pytest.raises(DatasetError):
        evaluate_run(QRELS, {"zzz": {"d1": 1.0}}, K)


def test_write_run_file(tmp_path):
    path = tmp_path / "runs" / "run.trec"
    write_run_file(RUN, path, run_name="toy")
    lines = [line.split() for line in path.read_text().splitlines()]
    assert len(lines) == sum(len(v) for v in RUN.values())
    assert all(len(parts) == 6 and parts[1] == "Q0" and parts[5] == "toy" for parts in lines)
    q1 = [parts for parts in lines if parts[0] == "q1"]
    assert [p[2] for p in q1] == ["d9", "d1", "d8", "d2"]
    assert [int(p[3]) for p in q1] == [1, 2, 3, 4]
    assert [float(p[4]) for p in q1] == [3.0, 2.0, 1.0, 0.5]
    with pytest.raises(ConfigError):
        write_run_file(RUN, path, run_name="two words")


def test_format_table():
    metrics = evaluate_run(QRELS, RUN, K)
    table = format_table(metrics, K)
    for name in ("NDCG", "MAP", "Recall", "P", "MRR", "@1", "@3", "@10"):
        assert name in table
    assert "0.7500" in table
    assert len({len(line) for line in table.splitlines()}) == 1  # fixed width
    assert "-" in format_table({}, [5])


CORPUS = {
    "d0": {"title": "Cats", "text": "the cat sat on the mat"},
    "d1": {"title": None, "text": "dogs bark loudly at night"},
    "d2": {"text": "quantum physics of black holes"},
    "d3": {"title": "Cooking", "text": "how to bake sourdough bread"},
    "q9": {"title": "", "text": "an unrelated passage that shares an id with a query"},
}
QUERIES = {"q0": "cat on a mat", "q1": "barking dogs", "q2": "black hole physics", "q9": "sourdough"}
TOY_QRELS = {"q0": {"d0": 1}, "q1": {"d1": 1}, "q2": {"d2": 1}, "q9": {"d3": 1}}


@pytest.mark.parametrize("search", ["exact", "faiss-flat"])
def test_evaluate_retriever(tmp_path, search):
    corpus = copy.deepcopy(CORPUS)
    result = evaluate_retriever(
        CharModel(),
        corpus,
        QUERIES,
        TOY_QRELS,
        k_values=[1, 10],
        search=search,
        batch_size=2,
        show_progress_bar=False,
        config={"dataset": "toy", "split": "test"},
    )
    assert corpus == CORPUS
    assert isinstance(result, EvaluationResult)
    assert "q9" in result.results["q9"]  # the run keeps the identical id; evaluation ignores it
    assert set(result.results) == set(QUERIES)
    assert result.metrics == evaluate_run(TOY_QRELS, result.results, [1, 10])
    assert result.metrics["NDCG@10"] == pytest.approx(
        np.mean(list(result.per_query_ndcg10.values())), abs=1e-5
    )
    assert result.config["dataset"] == "toy" and result.config["search"] == search
    assert result.config["score_function"] == "dot" and result.config["k_values"] == [1, 10]
    assert set(result.timings) == {"search", "evaluate", "total"}

    data = result.to_json()
    assert "NDCG@10" in data["metrics"] and data["ignore_identical_ids"] is True
    assert set(data["per_query"]["NDCG@10"]) == set(QUERIES)
    path = tmp_path / "result.json"
    write_result_json(result, path)
    assert json.loads(path.read_text())["metrics"] == result.to_json()["metrics"]


def test_evaluate_retriever_defaults_to_cos_sim():
    class NoScoreFunction(CharModel):
        score_function = None

    result = evaluate_retriever(
        NoScoreFunction(), CORPUS, QUERIES, TOY_QRELS, k_values=[1], show_progress_bar=False
    )
    assert result.config["score_function"] == "cos_sim"
    with pytest.raises(ConfigError):
        evaluate_retriever(CharModel(), CORPUS, QUERIES, TOY_QRELS, search="nope", show_progress_bar=False)


def test_library_versions():
    versions = library_versions()
    assert {"beir_peft", "beir", "sentence-transformers", "transformers", "torch", "faiss", "python"} <= set(
        versions
    )
    assert DEFAULT_K_VALUES == (1, 3, 5, 10, 100, 1000)
