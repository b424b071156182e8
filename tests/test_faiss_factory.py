"""``--search faiss``: any faiss index_factory string for single-vector models, trained on a seeded
sample, saved and reloaded through FaissSearch's fingerprint-keyed index folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np
import pytest
from test_search import TableModel

from beir_peft.cli import main
from beir_peft.errors import ConfigError
from beir_peft.search import ExactSearch, FaissSearch, make_search
from beir_peft.search.faiss_factory import train_rows

rng = np.random.default_rng(0)
DOCS = rng.standard_normal((700, 32)).astype(np.float32)
QUERY_VECTORS = rng.standard_normal((20, 32)).astype(np.float32)
CORPUS = {f"d{i}": {"title": "", "text": f"d{i}"} for i in range(len(DOCS))}
QUERIES = {f"q{i}": f"q{i}" for i in range(len(QUERY_VECTORS))}


def _model() -> TableModel:
    return TableModel(DOCS, QUERY_VECTORS)


def _recall(run, exact) -> float:
    return float(np.mean([len(set(run[q]) & set(exact[q])) / len(exact[q]) for q in exact]))


@pytest.fixture(scope="module")
def exact():
    return ExactSearch(_model(), show_progress_bar=False).search(CORPUS, QUERIES, 10, "dot")


@pytest.mark.parametrize(
    "factory, options, min_recall",
    [("Flat", {}, 1.0), ("IVF16,Flat", {"nprobe": 16}, 1.0), ("IVF16,PQ8", {"nprobe": 16}, 0.5),
     ("HNSW32", {"ef_search": 256}, 0.95)],
)  # fmt: skip
def test_factory_indexes_against_exact(exact, factory, options, min_recall):
    searcher = make_search(_model(), "faiss", index_factory=factory, corpus_chunk_size=300,
                           show_progress_bar=False, **options)  # fmt: skip
    run = searcher.search(CORPUS, QUERIES, 10, "dot")
    assert _recall(run, exact) >= min_recall
    assert searcher.index.ntotal == len(DOCS) and searcher.doc_ids == list(CORPUS)


def test_default_factory_is_flat_and_nprobe_matters(exact):
    assert make_search(_model(), "faiss").index_factory == "Flat"
    one = make_search(_model(), "faiss", index_factory="IVF16,Flat", show_progress_bar=False)
    all_lists = make_search(_model(), "faiss", index_factory="IVF16,Flat", nprobe=16, show_progress_bar=False)
    assert _recall(one.search(CORPUS, QUERIES, 10, "dot"), exact) < 1.0
    assert _recall(all_lists.search(CORPUS, QUERIES, 10, "dot"), exact) == 1.0


def test_seeded_training_sample_saved_and_reused(tmp_path):
    build = dict(index_factory="IVF8,Flat", train_size=300, seed=3, nprobe=8, show_progress_bar=False)
    first = FaissSearch(_model(), index_type="factory", index_dir=tmp_path, **build)
    run = first.search(CORPUS, QUERIES, 5, "cos_sim")
    rows = train_rows(len(DOCS), 300, 3)
    assert (
        len(rows) == 300 and len(set(rows.tolist())) == 300 and np.array_equal(rows, train_rows(700, 300, 3))
    )
    assert not np.array_equal(rows, train_rows(700, 300, 4)) and np.array_equal(
        train_rows(200, 300, 3), range(200)
    )
    meta = FaissSearch.read_meta(tmp_path)
    assert (meta["index_type"], meta["index_factory"], meta["train_size"], meta["seed"]) == (
        "factory",
        "IVF8,Flat",
        300,
        3,
    )

    model = _model()
    again = FaissSearch(model, index_type="factory", index_dir=tmp_path, **build)
    assert again.search(CORPUS, QUERIES, 5, "cos_sim") == run
    assert model.corpus_calls == 0  # the saved index was reused
    loaded = FaissSearch.load(tmp_path, _model(), nprobe=8)
    assert loaded.index_factory == "IVF8,Flat" and faiss.extract_index_ivf(loaded.index).nprobe == 8

    other = _model()  # another factory string: rebuilt
    FaissSearch(
        other, index_type="factory", index_dir=tmp_path, **{**build, "index_factory": "IVF4,Flat"}
    ).search(CORPUS, QUERIES, 5, "cos_sim")
    assert other.corpus_calls > 0 and FaissSearch.read_meta(tmp_path)["index_factory"] == "IVF4,Flat"


def test_factory_errors():
    with pytest.raises(ConfigError, match="index_factory"):
        FaissSearch(_model(), index_type="factory")
    with pytest.raises(ConfigError, match="index_factory"):
        FaissSearch(_model(), index_type="flat", index_factory="Flat")
    with pytest.raises(ConfigError, match="faiss cannot build"):
        make_search(_model(), "faiss", index_factory="NotAnIndex", show_progress_bar=False).search(
            CORPUS, QUERIES, 5, "dot"
        )
    with pytest.raises(ConfigError, match="nprobe"):
        make_search(_model(), "faiss", index_factory="Flat", nprobe=4, show_progress_bar=False).search(
            CORPUS, QUERIES, 5, "dot"
        )


@pytest.mark.usefixtures("no_network_data")
@pytest.mark.parametrize(
    "argv, needle",
    [(["--search", "exact", "--index-factory", "Flat"], "--index-factory: only for --search ann or faiss"),
     (["--search", "faiss-flat", "--ef-search", "8"], "--ef-search: only for --search faiss or faiss-hnsw"),
     (["--search", "faiss", "--candidates-per-token", "8"], "--candidates-per-token: only for --search ann"),
     (["--search", "faiss", "--vectors-dir", "v"], "--vectors-dir: only for --search exact")],
)  # fmt: skip
def test_cli_refuses_options_of_other_searches(capsys, argv, needle):
    assert main(["evaluate", "-q", *argv]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.usefixtures("no_network_data")
def test_cli_evaluates_with_a_factory_index(tmp_path, capsys):
    status = main(["evaluate", "-q", "--k-values", "1,10", "--search", "faiss", "--index-factory", "IVF4,Flat",
                   "--nprobe", "4", "--index-dir", str(tmp_path / "index"), "--run-file", str(tmp_path / "run.trec")])  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, out.err
    assert FaissSearch.read_meta(tmp_path / "index")["index_factory"] == "IVF4,Flat"
    assert (tmp_path / "run.trec").read_text().strip()
