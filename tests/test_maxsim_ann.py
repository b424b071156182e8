"""MaxSimSearch(mode="ann"): ColBERT v1 end-to-end retrieval (faiss candidates, exact MaxSim re-ranking).

A tiny random PT2ColBERT (2 layers, 32 wide) on a 40-document corpus of about 760 token vectors.
"""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np
import pytest
import torch
from beir.retrieval.evaluation import EvaluateRetrieval
from tiny_models import build_tiny_bert

from beir_peft import PT2ColBERT
from beir_peft.errors import ConfigError
from beir_peft.search import make_search
from beir_peft.search.maxsim import (
    ANN_INDEX_FILE,
    ANN_META_FILE,
    META_FILE,
    TOKEN_DOCS_FILE,
    MaxSimSearch,
    default_nlist,
    default_pq_m,
)
from beir_peft.search.token_ann import default_candidates_per_token

WORDS = (
    "earth axis tilt season sun orbit winter summer light heat cold moon star planet year day "
    "ocean river mountain forest rain snow wind cloud"
).split()


def _corpus_and_queries(num_docs=40, num_queries=10, seed=7):
    generator = torch.Generator().manual_seed(seed)

    def words(n):
        return " ".join(WORDS[int(j)] for j in torch.randint(0, len(WORDS), (n,), generator=generator))

    corpus = {}
    for i in range(num_docs):
        title = None if i % 5 == 0 else f"doc {i}"
        corpus[f"d{i}"] = {
            "title": title,
            "text": words(4 + int(torch.randint(0, 20, (1,), generator=generator))),
        }
    queries = {f"q{i}": words(3) for i in range(num_queries)}
    return corpus, queries


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return PT2ColBERT(tiny, gate=False, init="random", prefix_length=8)


@pytest.fixture(scope="module")
def data():
    return _corpus_and_queries()


@pytest.fixture(scope="module")
def exact_all(model, data):
    """Every document ranked by exact MaxSim, per query."""
    corpus, queries = data
    return MaxSimSearch(model, show_progress_bar=False).search(corpus, queries, top_k=len(corpus))


def _top(ranking, k):
    return list(ranking)[:k]


def _assert_same_ranking(results, expected, k):
    assert set(results) == set(expected)
    for qid, ranking in expected.items():
        assert list(results[qid]) == _top(ranking, k)
        for doc, score in results[qid].items():
            assert score == pytest.approx(ranking[doc], abs=1e-4)


def _ann(model, **options):
    options.setdefault("show_progress_bar", False)
    return MaxSimSearch(model, mode="ann", **options)


# ----------------------------------------------------------------------------- defaults
def test_default_index_shape():
    assert default_pq_m(128) == 16  # ColBERT v1: 16 sub-quantizers of 8 dimensions, one byte each
    assert [default_pq_m(d) for d in (96, 16, 12, 7)] == [12, 2, 1, 1]
    assert default_nlist(1_300_000) == 4096  # 4 sqrt(n) = 4561 -> 4096
    assert default_nlist(10_000) == 256  # 4 sqrt(n) = 400 -> 512, but 39 training vectors per list
    assert default_nlist(10**9, train_size=1 << 18) == 4096  # at most train_size / 39 lists
    assert default_nlist(10**9) == 1 << 16  # and at most 2^16
    assert default_nlist(1) == default_nlist(50) == 1


def test_default_candidates_per_token_follows_the_corpus_size():
    assert default_candidates_per_token(5183, 32) == 9  # SciFact: 5% of 5,183 over 32 query tokens
    assert default_candidates_per_token(64_000, 32) == 100  # from here on the authors' k'
    assert default_candidates_per_token(8_841_823, 32) == 100  # MS MARCO
    assert default_candidates_per_token(40, 32) == default_candidates_per_token(0, 32) == 8  # the floor
    assert default_candidates_per_token(20_000, 8) == 100  # shorter queries: each token may take more


def test_the_default_k_is_resolved_for_the_corpus_and_recorded(model, data):
    from beir_peft.evaluation import evaluate_retriever

    corpus, queries = data
    search = _ann(model)
    assert search.candidates_per_token is None and search.resolved_candidates_per_token() is None
    search.search(corpus, queries, top_k=5)
    assert search.resolved_candidates_per_token() == 8  # 40 documents: the floor
    assert _ann(model, candidates_per_token=3).resolved_candidates_per_token() is None  # no corpus yet
    given = _ann(model, candidates_per_token=3)
    given.search(corpus, queries, top_k=5)
    assert given.resolved_candidates_per_token() == 3  # a value given is used as it is
    qrels = {qid: {"d1": 1} for qid in queries}
    result = evaluate_retriever(model, corpus, queries, qrels, k_values=[1, 10, 100], search="ann",
                                show_progress_bar=False)  # fmt: skip
    assert result.config["search_settings"]["candidates_per_token"] == 8
    assert result.config["search_settings"]["mode"] == "ann"


# ----------------------------------------------------------------------------- flat fallback: exact
def test_flat_fallback_with_every_candidate_equals_exact_search(model, data, exact_all, caplog):
    corpus, queries = data
    search = _ann(model, candidates_per_token=100_000)
    with caplog.at_level(logging.INFO, logger="beir_peft.search.maxsim"):
        results = search.search(corpus, queries, top_k=10)
    assert "too few to train IVF-PQ" in caplog.text and "flat inner-product index" in caplog.text
    assert isinstance(search.ann_index, faiss.IndexFlat)
    assert search.ann_index.ntotal == len(search.vectors) > 700
    assert search.token_docs.dtype == np.int32
    assert np.array_equal(search.token_docs, np.repeat(np.arange(len(corpus)), search.doclens))
    _assert_same_ranking(results, exact_all, 10)

    # top_k beyond the corpus: every document (all are candidates), ranked as exact search ranks them
    everything = search.search(corpus, queries, top_k=1000, score_function="cos_sim")
    _assert_same_ranking(everything, exact_all, len(corpus))


def test_bounded_query_batches_and_document_chunks_change_nothing(model, data, exact_all):
    corpus, queries = data
    search = _ann(model, candidates_per_token=100_000, query_batch_size=3, max_scores_elements=128 * 120)
    _assert_same_ranking(search.search(corpus, queries, top_k=7), exact_all, 7)
    # each query batch's candidates (here: every document) were read in several chunks
    assert len(search._chunks(128, search.doclens)) > 4


# ----------------------------------------------------------------------------- IVF-PQ
def test_ivfpq_candidates_re_ranked_exactly_overlap_exact_search(model, data, exact_all):
    corpus, queries = data
    search = _ann(model, index_factory="IVF4,PQ8", candidates_per_token=4, nprobe=2)
    results = search.search(corpus, queries, top_k=10)
    ivf = faiss.extract_index_ivf(search.ann_index)
    assert isinstance(search.ann_index, faiss.IndexIVFPQ) and ivf.nlist == 4 and ivf.nprobe == 2
    assert search.ann_index.pq.M == 8 and search.ann_index.ntotal == len(search.vectors)
    overlaps = []
    for qid, ranking in results.items():
        assert 0 < len(ranking) <= 10
        scores = list(ranking.values())
        assert scores == sorted(scores, reverse=True)
        for doc, score in ranking.items():  # re-ranking is exact: every score is the true MaxSim
            assert score == pytest.approx(exact_all[qid][doc], abs=1e-4)
        overlaps.append(len(set(ranking) & set(_top(exact_all[qid], 10))) / 10)
    assert np.mean(overlaps) >= 0.7  # measured 0.95 with these seeds
    # fewer candidates per token can only lose documents, never invent scores
    narrow = _ann(model, index_factory="IVF4,PQ8", candidates_per_token=1, nprobe=1)
    for qid, ranking in narrow.search(corpus, queries, top_k=10).items():
        for doc, score in ranking.items():
            assert score == pytest.approx(exact_all[qid][doc], abs=1e-4)


def test_default_ivfpq_when_the_vector_threshold_is_lowered(model, data, exact_all):
    corpus, queries = data
    search = _ann(model, min_ivfpq_vectors=100)
    results = search.search(corpus, queries, top_k=10)
    n = len(search.vectors)
    nlist = default_nlist(n)
    assert search._ann_identity["index_factory"] == f"IVF{nlist},PQ16"
    assert nlist == 16  # 4 sqrt(n) = 112 -> 128, capped by 39 vectors per list -> 16
    assert isinstance(search.ann_index, faiss.IndexIVFPQ) and search.ann_index.pq.M == 16
    assert faiss.extract_index_ivf(search.ann_index).nprobe == 32
    overlap = np.mean([len(set(r) & set(_top(exact_all[q], 10))) / 10 for q, r in results.items()])
    assert overlap >= 0.7  # 100 candidates per token with every list probed: measured 1.0


# ----------------------------------------------------------------------------- index_dir
def test_index_dir_round_trip_is_identical_and_reused(tiny, data, tmp_path, monkeypatch, caplog):
    torch.manual_seed(1)
    model = PT2ColBERT(tiny, init="random", prefix_length=8)
    corpus, queries = data
    folder = tmp_path / "index"
    options = {"index_dir": folder, "index_factory": "IVF4,PQ8", "candidates_per_token": 4, "nprobe": 2}
    first = _ann(model, **options).search(corpus, queries, top_k=10)
    for name in (META_FILE, ANN_META_FILE, ANN_INDEX_FILE, TOKEN_DOCS_FILE):
        assert (folder / name).is_file()
    meta = json.loads((folder / ANN_META_FILE).read_text())
    assert meta["kind"] == "maxsim-ann" and meta["index_factory"] == "IVF4,PQ8"
    assert meta["ntotal"] == meta["num_tokens"] == np.load(folder / TOKEN_DOCS_FILE).shape[0]
    assert meta["fingerprint"] == model.fingerprint()

    def refuse(*args, **kwargs):
        raise AssertionError("the saved index should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(model, "encode_doc_token_lists", refuse)
        patch.setattr(MaxSimSearch, "_build_ann", refuse)
        again = _ann(model, **options)
        with caplog.at_level(logging.INFO, logger="beir_peft.search.maxsim"):
            assert again.search(corpus, queries, top_k=10) == first
        assert "Reusing the faiss IVF4,PQ8 token index" in caplog.text
        assert isinstance(again.vectors, np.memmap)
        # a second search on the same searcher keeps what it holds
        assert again.search(corpus, {"q1": queries["q1"]}, top_k=10) == {"q1": first["q1"]}
        # search-time settings do not touch the index
        wider = _ann(model, **{**options, "candidates_per_token": 50, "nprobe": 4})
        assert len(wider.search(corpus, queries, top_k=10)) == len(queries)

    # another index setting: the ANN part is rebuilt, the token vectors are reused
    exact = MaxSimSearch(model, show_progress_bar=False).search(corpus, queries, top_k=10)
    with monkeypatch.context() as patch:
        patch.setattr(model, "encode_doc_token_lists", refuse)
        flat = _ann(model, index_dir=folder, index_factory="Flat", candidates_per_token=100_000)
        _assert_same_ranking(flat.search(corpus, queries, top_k=10), exact, 10)
    assert json.loads((folder / ANN_META_FILE).read_text())["index_factory"] == "Flat"

    # a damaged faiss file: a warning, then a rebuild
    (folder / ANN_INDEX_FILE).write_bytes(b"not a faiss index")
    with caplog.at_level(logging.WARNING, logger="beir_peft.search.maxsim"):
        rebuilt = _ann(model, index_dir=folder, index_factory="Flat", candidates_per_token=100_000)
        _assert_same_ranking(rebuilt.search(corpus, queries, top_k=10), exact, 10)
    assert "Rebuilding the ANN index" in caplog.text

    # other weights: both parts are rebuilt
    with torch.no_grad():
        model.module.linear.weight.add_(0.05)
    changed = _ann(model, index_dir=folder, index_factory="Flat", candidates_per_token=100_000)
    new_exact = MaxSimSearch(model, show_progress_bar=False).search(corpus, queries, top_k=10)
    _assert_same_ranking(changed.search(corpus, queries, top_k=10), new_exact, 10)
    assert json.loads((folder / ANN_META_FILE).read_text())["fingerprint"] == model.fingerprint()


def test_a_new_corpus_replaces_the_in_memory_ann_index(model, data):
    corpus, queries = data
    search = _ann(model, candidates_per_token=100_000)
    search.search(corpus, queries, top_k=3)
    smaller = {k: corpus[k] for k in list(corpus)[:6]}
    results = search.search(smaller, queries, top_k=3)
    assert search.ann_index.ntotal == int(search.doclens.sum()) and len(search.doclens) == 6
    expected = MaxSimSearch(model, show_progress_bar=False).search(smaller, queries, top_k=6)
    _assert_same_ranking(results, expected, 3)


# ----------------------------------------------------------------------------- small cases
def test_single_query_through_evaluate_retrieval(model, data, exact_all):
    corpus, queries = data
    retriever = EvaluateRetrieval(
        _ann(model, candidates_per_token=100_000), k_values=[1, 5], score_function="maxsim"
    )
    results = retriever.retrieve(corpus, {"q3": queries["q3"]})
    assert list(results) == ["q3"]
    _assert_same_ranking(results, {"q3": exact_all["q3"]}, 5)
    assert corpus["d0"]["title"] is None  # the caller's corpus is untouched


def test_bad_options_are_config_errors(model, data):
    for option in ("nprobe", "candidates_per_token", "train_size", "nlist", "pq_m", "min_ivfpq_vectors"):
        with pytest.raises(ConfigError, match=option):
            _ann(model, **{option: 0})
    with pytest.raises(ConfigError, match="candidates_per_token"):
        _ann(model, candidates_per_token=True)
    with pytest.raises(ConfigError, match="index_factory"):
        _ann(model, index_factory="Bogus")
    with pytest.raises(ConfigError, match="index_factory"):
        _ann(model, index_factory=" ")
    with pytest.raises(ConfigError, match="leave them out"):
        _ann(model, index_factory="IVF4,PQ8", nlist=4)
    with pytest.raises(ConfigError, match="does not divide"):
        _ann(model, pq_m=7)
    with pytest.raises(ConfigError, match="mode='ann'"):
        MaxSimSearch(model, use_gpu=True)
    if faiss.get_num_gpus() == 0:
        with pytest.raises(ConfigError, match="faiss-gpu"):
            _ann(model, use_gpu=True)
    corpus, queries = data
    with pytest.raises(ConfigError, match="cannot train"):  # ~780 vectors cannot train 4096 lists
        _ann(model, index_factory="IVF4096,Flat").search(corpus, queries, top_k=3)


def test_make_search_and_cli_route_ann(model, tiny, tmp_path, capsys):
    from beir_peft.cli import main

    searcher = make_search(model, "ann", batch_size=8, show_progress_bar=False, nprobe=4)
    assert isinstance(searcher, MaxSimSearch) and searcher.mode == "ann" and searcher.nprobe == 4
    assert make_search(model, "exact").mode == "exact" and make_search(model, "maxsim").mode == "exact"
    with pytest.raises(ConfigError, match="late-interaction"):
        make_search(object(), "ann")
    with pytest.raises(ConfigError, match="single-vector"):
        make_search(model, "faiss-hnsw")
    with pytest.raises(ConfigError, match="unknown search"):
        make_search(object(), "plaid")

    model.save(tmp_path / "colbert")
    assert (
        main(
            ["evaluate", "--model", str(tmp_path / "colbert"), "--search", "ann", "--k-values", "1,10", "-q"]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "NDCG" in out.out
    assert main(["evaluate", "--model", tiny, "--search", "ann", "--k-values", "1", "-q"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "late-interaction" in errors[0] and "faiss-flat" in errors[0]
