"""Corpus vectors as memory-mapped .npy shards (cache, resume) and exact search over them in chunks."""

from __future__ import annotations

import copy
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from test_search import CORPUS, QUERIES, CharModel, assert_same_run, brute_force, ranking

from beir_peft.errors import ArtifactError
from beir_peft.search import ExactSearch, ShardedExactSearch, make_search, sanitize_corpus
from beir_peft.search.vector_shards import (
    META_FILE,
    VectorShards,
    default_shard_size,
    encode_shards,
    shard_name,
)


def _sharded(model, folder=None, **kwargs):
    kwargs = {"shard_size": 3, "chunk_rows": 2, "query_batch_size": 3, **kwargs}
    return ShardedExactSearch(model, vectors_dir=folder, show_progress_bar=False, **kwargs)


@pytest.mark.parametrize("score_function", ["dot", "cos_sim"])
def test_sharded_equals_exact_and_brute_force(tmp_path, score_function):
    corpus = copy.deepcopy(CORPUS)
    run = _sharded(CharModel(), tmp_path / "vectors").search(corpus, QUERIES, 4, score_function)
    exact = ExactSearch(CharModel(), show_progress_bar=False).search(CORPUS, QUERIES, 4, score_function)
    assert_same_run(run, exact)
    assert_same_run(run, brute_force(CharModel(), CORPUS, QUERIES, 4, normalize=score_function == "cos_sim"))
    assert corpus == CORPUS
    # three shards of 3, 3 and 1 rows, numpy's format, no pickle
    shards = sorted(p.name for p in (tmp_path / "vectors").glob("shard-*.npy"))
    assert shards == [shard_name(0), shard_name(1), shard_name(2)]
    assert np.load(tmp_path / "vectors" / shard_name(2), allow_pickle=False).shape == (1, 32)


def test_temporary_folder_single_query_large_top_k_identical_id():
    corpus = {"q0": {"title": "", "text": "cat on a mat"}, **CORPUS}
    run = _sharded(CharModel()).search(corpus, {"q0": QUERIES["q0"]}, 100, "cos_sim")
    assert set(run["q0"]) == set(corpus) and ranking(run["q0"])[0] == "q0"


def test_float16_vectors(tmp_path):
    run = _sharded(CharModel(), tmp_path, vector_dtype="float16").search(CORPUS, QUERIES, 3, "dot")
    assert np.load(tmp_path / shard_name(0)).dtype == np.float16
    assert_same_run(run, brute_force(CharModel(), CORPUS, QUERIES, 3))


def test_shards_are_reused_and_resumed(tmp_path):
    ids, docs = sanitize_corpus(CORPUS)
    model = CharModel()
    encode_shards(model, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    assert model.corpus_calls == 3
    encode_shards(model, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    assert model.corpus_calls == 3  # all reused
    (tmp_path / shard_name(1)).unlink()  # a run killed before shard 1 was written
    shards = encode_shards(model, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    assert model.corpus_calls == 4  # only the missing shard
    assert shards.doc_ids == ids and shards.meta["num_shards"] == 3
    rows = np.concatenate([chunk for _, chunk in shards.chunks(2)])
    np.testing.assert_array_equal(rows, model.encode_corpus(docs))


def test_other_corpus_model_or_settings_encode_again(tmp_path, caplog):
    ids, docs = sanitize_corpus(CORPUS)
    model = CharModel()
    encode_shards(model, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    changed = [dict(d) for d in docs]
    changed[0]["text"] = "a changed text"
    for kwargs in ({"docs": changed}, {"shard_size": 4}, {"dtype": "float16"}, {"ids": ids[::-1]}):
        args = {"ids": ids, "docs": docs, "shard_size": 3, "dtype": "float32", **kwargs}
        calls = model.corpus_calls
        with caplog.at_level("WARNING"):
            shards = encode_shards(model, args["ids"], args["docs"], tmp_path, shard_size=args["shard_size"],
                                   dtype=args["dtype"], show_progress_bar=False)  # fmt: skip
        assert model.corpus_calls == calls + shards.meta["num_shards"]
        assert "encoding them again" in caplog.text
        caplog.clear()

    class NoFingerprint(CharModel):
        fingerprint = None

    other = NoFingerprint()
    encode_shards(other, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    encode_shards(other, ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    assert other.corpus_calls == 6  # nothing says which model encoded them: never reused


def test_unreadable_shards(tmp_path):
    ids, docs = sanitize_corpus(CORPUS)
    encode_shards(CharModel(), ids, docs, tmp_path, shard_size=3, show_progress_bar=False)
    np.save(tmp_path / shard_name(0), np.zeros((2, 32), np.float32))
    with pytest.raises(ArtifactError, match="shape"):
        list(VectorShards(tmp_path).chunks(2))
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "kind": "other"}))
    with pytest.raises(ArtifactError):
        VectorShards(tmp_path)


def test_make_search_picks_sharded_only_when_asked(tmp_path):
    assert isinstance(make_search(CharModel(), "exact"), ExactSearch)
    assert isinstance(make_search(CharModel(), "exact", vectors_dir=tmp_path), ShardedExactSearch)
    assert isinstance(make_search(CharModel(), "exact", sharded=True), ShardedExactSearch)
    searcher = make_search(CharModel(), "exact", vector_dtype="float16", shard_size=5)
    assert searcher.vector_dtype == "float16" and searcher.shard_size == 5 and searcher.vectors_dir is None


@pytest.mark.integration
def test_sharded_run_equals_exact_on_a_scifact_slice(scifact_zero_shot_slice, tmp_path):
    """The real all-MiniLM-L6-v2 on 300 SciFact queries x 1000 passages: the same run as ExactSearch."""
    from beir_peft.evaluation import evaluate_retriever
    from beir_peft.models.loading import load_model

    data, expected = scifact_zero_shot_slice["data"], scifact_zero_shot_slice["result"]
    model = load_model()
    model.model.max_seq_length = scifact_zero_shot_slice["max_seq_length"]
    options = {"vectors_dir": str(tmp_path), "shard_size": 300, "vector_dtype": "float32"}
    result = evaluate_retriever(
        model,
        data.corpus,
        data.queries,
        data.qrels,
        k_values=[10],
        show_progress_bar=False,
        search_options=options,
    )
    assert result.results.keys() == expected.results.keys()
    for qid, want in expected.results.items():
        got = result.results[qid]
        assert len(got) == len(want)
        for (doc, score), (want_doc, want_score) in zip(got.items(), want.items(), strict=True):
            assert score == pytest.approx(want_score, abs=1e-5)
            assert doc == want_doc or want.get(doc, -1) == pytest.approx(score, abs=1e-5)
    assert result.metrics == pytest.approx(expected.metrics, abs=1e-6)


def test_the_default_shard_size_follows_the_corpus_size_alone(tmp_path):
    """A corpus is cut into 64 shards when it is large enough (so 64 processes share its encoding),
    no shard under 256 passages or over 50,000: the layout never depends on the processes."""
    assert [default_shard_size(n) for n in (1, 5_183, 16_384, 100_000, 8_841_823)] == [
        256,
        256,
        256,
        1_563,
        50_000,
    ]
    ids = [f"d{i}" for i in range(600)]
    docs = [{"title": "", "text": f"passage {i}"} for i in range(600)]
    shards = encode_shards(CharModel(), ids, docs, tmp_path, show_progress_bar=False)
    assert shards.meta["shard_size"] == 256 and shards.meta["num_shards"] == 3
    assert sorted(p.name for p in tmp_path.glob("shard-*.npy")) == [shard_name(i) for i in range(3)]
