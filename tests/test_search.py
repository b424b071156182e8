"""Exact and faiss search on tiny deterministic fake models (no real encoder is loaded)."""

from __future__ import annotations

import copy
import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np
import pytest
import torch

from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.search import ExactSearch, FaissSearch, make_search, sanitize_corpus

DIM = 32


class CharModel:
    """Bag of characters hashed into 32 dims: ``vec[ord(c) % 32] += 1`` over lower-cased text."""

    score_function = "dot"

    def __init__(self) -> None:
        self.corpus_calls = 0
        self.query_calls = 0

    def fingerprint(self) -> str:
        """Its vectors depend on the text alone: every CharModel encodes alike (saved indexes are keyed by this)."""
        return "char-bag-32"

    @staticmethod
    def vector(text: str) -> np.ndarray:
        vec = np.zeros(DIM, dtype=np.float32)
        for ch in text.lower():
            vec[ord(ch) % DIM] += 1.0
        return vec

    def _out(self, texts, convert_to_tensor=False, normalize_embeddings=False):
        out = np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)
        if normalize_embeddings:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(out) if convert_to_tensor else out

    def encode_queries(
        self,
        queries,
        batch_size=32,
        show_progress_bar=False,
        convert_to_tensor=False,
        normalize_embeddings=False,
        **kw,
    ):
        self.query_calls += 1
        return self._out(list(queries), convert_to_tensor, normalize_embeddings)

    def encode_corpus(
        self,
        corpus,
        batch_size=32,
        show_progress_bar=False,
        convert_to_tensor=False,
        normalize_embeddings=False,
        **kw,
    ):
        self.corpus_calls += 1
        texts = [f"{d.get('title') or ''} {d.get('text') or ''}".strip() for d in corpus]
        return self._out(texts, convert_to_tensor, normalize_embeddings)


class TableModel(CharModel):
    """Looks a text up in a fixed table of vectors (``"d12"`` -> row 12 of ``docs``)."""

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:
        super().__init__()
        self.docs, self.queries = docs, queries

    def fingerprint(self) -> str:
        return hashlib.sha256(self.docs.tobytes() + self.queries.tobytes()).hexdigest()[:16]

    def vector(self, text: str) -> np.ndarray:
        table = self.docs if text.startswith("d") else self.queries
        return table[int(text[1:])]

    def _out(self, texts, convert_to_tensor=False, normalize_embeddings=False):
        out = np.stack([self.vector(t) for t in texts]).astype(np.float32)
        return torch.from_numpy(out) if convert_to_tensor else out


CORPUS = {
    "d0": {"title": "Cats", "text": "the cat sat on the mat"},
    "d1": {"title": None, "text": "dogs bark loudly at night"},
    "d2": {"text": "quantum physics of black holes"},
    "d3": {"title": "Zebra", "text": "zebras have stripes"},
    "d4": {"title": "Cooking", "text": "how to bake sourdough bread"},
    "d5": {"title": "", "text": "xylophone music jazz quartet"},
    "d6": {"title": "Rivers", "text": None},
}
QUERIES = {"q0": "cat on a mat", "q1": "barking dogs", "q2": "black hole physics", "q3": "baking bread"}


def brute_force(model, corpus, queries, top_k, normalize=False):
    ids, docs = sanitize_corpus(corpus)
    d = model.encode_corpus(docs, normalize_embeddings=normalize)
    q = model.encode_queries([queries[k] for k in queries], normalize_embeddings=normalize)
    scores = q @ d.T
    out = {}
    for row, qid in zip(scores, queries, strict=True):
        order = np.argsort(-row, kind="stable")[:top_k]
        out[qid] = {ids[i]: float(row[i]) for i in order}
    return out


def assert_same_run(run, expected):
    assert run.keys() == expected.keys()
    for qid in expected:
        got = sorted(run[qid].values(), reverse=True)
        want = sorted(expected[qid].values(), reverse=True)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert list(run[qid].values()) == sorted(run[qid].values(), reverse=True)


def ranking(hits):
    return [doc for doc, _ in sorted(hits.items(), key=lambda item: -item[1])]


def test_sanitize_corpus_copies():
    corpus = copy.deepcopy(CORPUS)
    ids, docs = sanitize_corpus(corpus)
    assert ids == list(CORPUS)
    assert docs[1]["title"] == "" and docs[2]["title"] == "" and docs[6]["text"] == ""
    assert corpus == CORPUS


@pytest.mark.parametrize("score_function", ["dot", "cos_sim"])
def test_exact_matches_brute_force(score_function):
    model = CharModel()
    corpus = copy.deepcopy(CORPUS)
    run = ExactSearch(model, batch_size=4, corpus_chunk_size=3, show_progress_bar=False).search(
        corpus, QUERIES, 3, score_function
    )
    expected = brute_force(CharModel(), CORPUS, QUERIES, 3, normalize=score_function == "cos_sim")
    assert_same_run(run, expected)
    for qid in QUERIES:  # every returned score is the true score of that doc
        full = brute_force(CharModel(), CORPUS, {qid: QUERIES[qid]}, len(CORPUS), score_function == "cos_sim")
        for doc, score in run[qid].items():
            assert score == pytest.approx(full[qid][doc], abs=1e-5)
    assert corpus == CORPUS  # None / missing titles were not rewritten in place


def test_exact_single_query_and_large_top_k():
    run = ExactSearch(CharModel(), show_progress_bar=False).search(CORPUS, {"q0": QUERIES["q0"]}, 100, "dot")
    assert list(run) == ["q0"]
    assert set(run["q0"]) == set(CORPUS)
    assert ranking(run["q0"])[0] == "d0"


def test_exact_keeps_identical_ids_and_rejects_empty():
    corpus = {"q0": {"title": "", "text": "cat on a mat"}, **CORPUS}
    run = ExactSearch(CharModel(), show_progress_bar=False).search(corpus, QUERIES, 2, "cos_sim")
    assert ranking(run["q0"])[0] == "q0" and run["q0"]["q0"] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        ExactSearch(CharModel()).search(CORPUS, {}, 2, "dot")
    with pytest.raises(ConfigError):
        ExactSearch(CharModel()).search({}, QUERIES, 2, "dot")


@pytest.mark.parametrize("score_function", ["dot", "cos_sim"])
def test_faiss_flat_equals_exact(score_function):
    corpus = copy.deepcopy(CORPUS)
    exact = ExactSearch(CharModel(), show_progress_bar=False).search(corpus, QUERIES, 5, score_function)
    flat = FaissSearch(CharModel(), corpus_chunk_size=2, show_progress_bar=False).search(
        corpus, QUERIES, 5, score_function
    )
    assert_same_run(flat, exact)
    for qid in QUERIES:
        assert ranking(flat[qid])[:2] == ranking(exact[qid])[:2]
    assert corpus == CORPUS


def test_faiss_top_k_beyond_corpus_single_query_identical_id():
    corpus = {"q0": {"title": None, "text": "cat on a mat"}, **CORPUS}
    run = FaissSearch(CharModel(), show_progress_bar=False).search(
        corpus, {"q0": "cat on a mat"}, 1000, "cos_sim"
    )
    assert set(run["q0"]) == set(corpus)
    assert ranking(run["q0"])[0] == "q0"  # not dropped: evaluation's ignore_identical_ids handles it


def test_hnsw_recall_against_flat():
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((2000, DIM)).astype(np.float32)
    queries = rng.standard_normal((50, DIM)).astype(np.float32)
    model = TableModel(docs, queries)
    corpus = {f"d{i}": {"title": "", "text": f"d{i}"} for i in range(len(docs))}
    qs = {f"q{i}": f"q{i}" for i in range(len(queries))}
    flat = FaissSearch(model, "flat", show_progress_bar=False).search(corpus, qs, 10, "dot")
    hnsw = FaissSearch(model, "hnsw", show_progress_bar=False).search(corpus, qs, 10, "dot")
    overlap = np.mean([len(set(flat[q]) & set(hnsw[q])) / 10 for q in qs])
    assert overlap > 0.95


def test_index_dir_round_trip_reuses_index(tmp_path):
    first = CharModel()
    run1 = FaissSearch(first, index_dir=tmp_path, show_progress_bar=False).search(
        CORPUS, QUERIES, 4, "cos_sim"
    )
    assert first.corpus_calls == 1
    meta = json.loads((tmp_path / "index.json").read_text())
    assert meta["doc_ids"] == list(CORPUS) and meta["ntotal"] == len(CORPUS) and meta["dim"] == DIM
    assert meta["score_function"] == "cos_sim" and meta["index_type"] == "flat"

    second = CharModel()
    run2 = FaissSearch(second, index_dir=tmp_path, show_progress_bar=False).search(
        CORPUS, QUERIES, 4, "cos_sim"
    )
    assert second.corpus_calls == 0 and run2 == run1

    third = CharModel()
    loaded = FaissSearch.load(tmp_path, third, show_progress_bar=False)
    assert loaded.search(CORPUS, QUERIES, 4, "cos_sim") == run1 and third.corpus_calls == 0

    # another corpus (or score function) in the same folder: rebuilt and re-saved
    fourth = CharModel()
    smaller = {k: CORPUS[k] for k in list(CORPUS)[:4]}
    FaissSearch(fourth, index_dir=tmp_path, show_progress_bar=False).search(smaller, QUERIES, 4, "cos_sim")
    assert fourth.corpus_calls == 1
    assert json.loads((tmp_path / "index.json").read_text())["ntotal"] == 4


def test_hnsw_save_load(tmp_path):
    searcher = FaissSearch(CharModel(), "hnsw", hnsw_m=8, show_progress_bar=False)
    run = searcher.search(CORPUS, QUERIES, 3, "dot")
    searcher.save(tmp_path)
    loaded = FaissSearch.load(tmp_path, CharModel(), ef_search=64)
    assert loaded.index_type == "hnsw" and loaded.index.hnsw.efSearch == 64
    assert loaded.search(CORPUS, QUERIES, 3, "dot") == run


def test_load_errors(tmp_path):
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path / "missing", CharModel())
    searcher = FaissSearch(CharModel(), show_progress_bar=False)
    searcher.build(CORPUS, "dot")
    searcher.save(tmp_path)
    meta_path, index_path = tmp_path / "index.json", tmp_path / "index.faiss"
    meta, blob = meta_path.read_text(), index_path.read_bytes()

    meta_path.write_text(json.dumps({**json.loads(meta), "dim": DIM + 1}))  # mismatched dim
    with pytest.raises(ArtifactError, match="dim"):
        FaissSearch.load(tmp_path, CharModel())
    meta_path.write_text(json.dumps({**json.loads(meta), "ntotal": 3, "doc_ids": ["a", "b", "c"]}))
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path, CharModel())
    meta_path.write_text("{not json")
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path, CharModel())

    meta_path.write_text(meta)
    index_path.write_bytes(blob[: len(blob) // 2])  # truncated index
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path, CharModel())
    no_size = {k: v for k, v in json.loads(meta).items() if k != "index_bytes"}
    meta_path.write_text(json.dumps(no_size))  # faiss itself must reject the corrupt file
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path, CharModel())
    index_path.unlink()
    with pytest.raises(ArtifactError):
        FaissSearch.load(tmp_path, CharModel())

    index_path.write_bytes(blob)
    FaissSearch.load(tmp_path, CharModel())  # intact again


def test_make_search():
    model = CharModel()
    assert isinstance(make_search(model, "exact"), ExactSearch)
    assert make_search(model, "faiss-flat").index_type == "flat"
    assert make_search(model, "faiss-hnsw", index_dir="x").index_type == "hnsw"
    with pytest.raises(ConfigError, match="faiss-hnsw"):
        make_search(model, "bm25")
    with pytest.raises(ConfigError):
        FaissSearch(model, index_type="ivf")


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is visible to faiss")
def test_use_gpu_without_faiss_gpu():
    with pytest.raises(ConfigError, match="beir-peft\\[gpu\\]"):
        FaissSearch(CharModel(), use_gpu=True)
