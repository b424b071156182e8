"""A saved index (``index_dir``) is reused only by the model and corpus it was built for.

Two checkpoints of one method share their description, so the index must be keyed by a
fingerprint of the weights and settings, and by the corpus' ids *and* texts. Tiny random BERTs
(2 layers, 32 wide) keep every test to seconds.
"""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import PT2DPR, PT2ColBERT
from beir_peft.models.base import DenseRetriever
from beir_peft.search import FaissSearch, make_search
from beir_peft.search.corpus import sanitize_corpus
from beir_peft.search.maxsim import META_FILE, MaxSimSearch

FAISS_LOG = "beir_peft.search.faiss_search"
MAXSIM_LOG = "beir_peft.search.maxsim"

CORPUS = {
    "d0": {"title": "Cats", "text": "the cat sat on the mat"},
    "d1": {"title": None, "text": "dogs bark loudly at night"},
    "d2": {"text": "quantum physics of black holes"},
    "d3": {"title": "Zebra", "text": "zebras have stripes"},
    "d4": {"title": "Cooking", "text": "how to bake sourdough bread"},
    "d5": {"title": "", "text": "xylophone music jazz quartet"},
    "d6": {"title": "Rivers", "text": "the longest rivers of the world"},
    "d7": {"title": "Moon", "text": "the moon orbits the earth every month"},
}
QUERIES = {"q0": "cat on a mat", "q1": "barking dogs", "q2": "black hole physics", "q3": "baking bread"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


def _pt2dpr(tiny: str, seed: int) -> PT2DPR:
    """A PT2-DPR whose prompts (random, ungated) differ with ``seed``: same method, backbone, config."""
    torch.manual_seed(seed)
    return PT2DPR(tiny, init="random", gate=False, prefix_length=4)


def _faiss(model, index_dir=None, **options) -> FaissSearch:
    return make_search(model, "faiss-flat", index_dir=index_dir, show_progress_bar=False, **options)


def _assert_same_run(run, expected):
    assert run.keys() == expected.keys()
    for qid in expected:
        assert list(run[qid]) == list(expected[qid])
        np.testing.assert_allclose(
            list(run[qid].values()), list(expected[qid].values()), rtol=1e-5, atol=1e-5
        )


def _refuse(*args, **kwargs):
    raise AssertionError("the saved index should have been reused")


class NoFingerprintModel:
    """An arbitrary BEIR dense model: bag of characters, and no ``fingerprint()``."""

    score_function = "dot"

    def __init__(self, offset: float = 0.0):
        self.offset = offset
        self.corpus_calls = 0

    def _vectors(self, texts):
        out = np.full((len(texts), 16), self.offset, dtype=np.float32)
        for row, text in enumerate(texts):
            for ch in text.lower():
                out[row, ord(ch) % 16] += 1.0
        return out

    def encode_queries(self, queries, batch_size=32, **kwargs):
        return self._vectors(list(queries))

    def encode_corpus(self, corpus, batch_size=32, **kwargs):
        self.corpus_calls += 1
        return self._vectors([f"{d.get('title') or ''} {d.get('text') or ''}".strip() for d in corpus])


class FingerprintedModel(NoFingerprintModel):
    def fingerprint(self) -> str:
        return f"bag-{self.offset}"


# ----------------------------------------------------------------------------- fingerprints
def test_fingerprint_tells_checkpoints_of_one_method_apart(tiny):
    a, b = _pt2dpr(tiny, seed=0), _pt2dpr(tiny, seed=1)
    assert a.describe() == b.describe()  # what the index used to be keyed by
    assert a.fingerprint() != b.fingerprint()
    b.load_trainable_state_dict(a.trainable_state_dict())
    assert b.fingerprint() == a.fingerprint()


def test_fingerprint_follows_weights_and_settings_and_is_cached(tiny, monkeypatch):
    from beir_peft.models import fingerprint as fingerprint_module

    model = _pt2dpr(tiny, seed=0)
    before = model.fingerprint()
    calls = []
    digest = fingerprint_module.tensors_digest
    monkeypatch.setattr(fingerprint_module, "tensors_digest", lambda *a: calls.append(1) or digest(*a))
    assert model.fingerprint() == before and not calls  # cached: nothing re-hashed
    with torch.no_grad():  # a *frozen* backbone weight (what merging LoRA changes)
        model.model[0].auto_model.encoder.layer[0].attention.self.query.weight.add_(1e-3)
    changed = model.fingerprint()
    assert changed != before and len(calls) == 1
    model.model.max_seq_length = 16  # a setting that shapes the vectors
    assert model.fingerprint() != changed


def test_fingerprint_sees_a_retrievers_own_input_length(tiny):
    """The length lives on the retriever (applied per call), not in the shared pipeline."""
    from beir_peft.encoders.backbone import load_backbone

    backbone = load_backbone(tiny)
    short, long = DenseRetriever(backbone, max_seq_length=8), DenseRetriever(backbone, max_seq_length=64)
    assert short.fingerprint() != long.fingerprint()


def test_a_plain_sentence_transformers_model_is_fingerprinted_by_all_its_weights(tmp_path):
    from sentence_transformers import SentenceTransformer

    first = DenseRetriever(SentenceTransformer(str(build_tiny_bert(tmp_path / "a", seed=0)), device="cpu"))
    second = DenseRetriever(SentenceTransformer(str(build_tiny_bert(tmp_path / "b", seed=1)), device="cpu"))
    again = DenseRetriever(SentenceTransformer(str(build_tiny_bert(tmp_path / "c", seed=0)), device="cpu"))
    _faiss(first, tmp_path / "index").search(CORPUS, QUERIES, 5, "dot")
    run = _faiss(second, tmp_path / "index").search(CORPUS, QUERIES, 5, "dot")
    _assert_same_run(run, _faiss(second).search(CORPUS, QUERIES, 5, "dot"))
    assert first.fingerprint() != second.fingerprint()
    assert first.fingerprint() == again.fingerprint()
    assert DenseRetriever(again.model, score_function="cos_sim").fingerprint() != first.fingerprint()


def test_corpus_digest_covers_texts_not_order():
    from beir_peft.search.corpus import corpus_digest

    ids, docs = sanitize_corpus(CORPUS)
    reordered = dict(reversed(list(CORPUS.items())))
    assert corpus_digest(*sanitize_corpus(reordered)) == corpus_digest(ids, docs)
    edited = {**CORPUS, "d3": {"title": "Zebra", "text": "zebras have no stripes"}}
    assert corpus_digest(*sanitize_corpus(edited)) != corpus_digest(ids, docs)
    moved = {**CORPUS, "d3": {"title": "", "text": "Zebra zebras have stripes"}}  # same joined text
    assert corpus_digest(*sanitize_corpus(moved)) != corpus_digest(ids, docs)


# ----------------------------------------------------------------------------- faiss index_dir
def test_faiss_index_of_model_a_is_not_reused_for_model_b(tiny, tmp_path, caplog):
    a, b = _pt2dpr(tiny, seed=0), _pt2dpr(tiny, seed=1)
    run_a = _faiss(a, tmp_path).search(CORPUS, QUERIES, 5, "dot")
    own_b = _faiss(b).search(CORPUS, QUERIES, 5, "dot")  # no cache
    assert own_b != run_a
    with caplog.at_level(logging.INFO, logger=FAISS_LOG):
        run_b = _faiss(b, tmp_path).search(CORPUS, QUERIES, 5, "dot")
    _assert_same_run(run_b, own_b)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "model (weights or settings)" in warnings[0].getMessage()
    assert json.loads((tmp_path / "index.json").read_text())["fingerprint"] == b.fingerprint()


def test_faiss_index_is_rebuilt_for_changed_texts_under_the_same_ids(tiny, tmp_path, caplog):
    model = _pt2dpr(tiny, seed=0)
    _faiss(model, tmp_path).search(CORPUS, QUERIES, 3, "dot")
    edited = {**CORPUS, "d5": {"title": "", "text": QUERIES["q2"]}}  # q2's own words now
    with caplog.at_level(logging.WARNING, logger=FAISS_LOG):
        run = _faiss(model, tmp_path).search(edited, QUERIES, 3, "dot")
    _assert_same_run(run, _faiss(model).search(edited, QUERIES, 3, "dot"))
    assert "corpus (doc ids or texts)" in caplog.text


def test_faiss_index_is_reused_by_the_same_model_and_a_reloaded_copy(tiny, tmp_path, monkeypatch, caplog):
    model = _pt2dpr(tiny, seed=0)
    first = _faiss(model, tmp_path / "index").search(CORPUS, QUERIES, 5, "dot")
    model.save(tmp_path / "saved")
    reloaded = beir_peft.load(tmp_path / "saved")
    assert reloaded.fingerprint() == model.fingerprint()
    for retriever in (model, reloaded):
        with monkeypatch.context() as patch, caplog.at_level(logging.INFO, logger=FAISS_LOG):
            patch.setattr(retriever, "encode_corpus", _refuse)
            reordered = dict(reversed(list(CORPUS.items())))  # same ids and texts, other order
            _assert_same_run(
                _faiss(retriever, tmp_path / "index").search(reordered, QUERIES, 5, "dot"), first
            )
    assert "Reusing the faiss index" in caplog.text and "WARNING" not in caplog.text


def test_faiss_index_is_rebuilt_for_other_hnsw_settings(tmp_path, caplog):
    model = FingerprintedModel()
    FaissSearch(model, "hnsw", hnsw_m=8, index_dir=tmp_path, show_progress_bar=False).search(
        CORPUS, QUERIES, 3, "dot"
    )
    FaissSearch(model, "hnsw", hnsw_m=8, index_dir=tmp_path, show_progress_bar=False).search(
        CORPUS, QUERIES, 3, "dot"
    )
    assert model.corpus_calls == 1  # same settings: reused
    with caplog.at_level(logging.WARNING, logger=FAISS_LOG):
        FaissSearch(model, "hnsw", hnsw_m=16, index_dir=tmp_path, show_progress_bar=False).search(
            CORPUS, QUERIES, 3, "dot"
        )
    assert model.corpus_calls == 2 and "hnsw_m: 8 there, 16 now" in caplog.text
    assert json.loads((tmp_path / "index.json").read_text())["hnsw_m"] == 16


def test_a_model_without_fingerprint_never_reuses_a_saved_index(tmp_path, caplog):
    FaissSearch(FingerprintedModel(), index_dir=tmp_path, show_progress_bar=False).search(
        CORPUS, QUERIES, 3, "dot"
    )
    other = NoFingerprintModel(offset=0.5)
    with caplog.at_level(logging.WARNING, logger=FAISS_LOG):
        run = FaissSearch(other, index_dir=tmp_path, show_progress_bar=False).search(
            CORPUS, QUERIES, 3, "dot"
        )
    assert other.corpus_calls == 1 and "has no fingerprint()" in caplog.text
    _assert_same_run(run, FaissSearch(other, show_progress_bar=False).search(CORPUS, QUERIES, 3, "dot"))
    again = NoFingerprintModel(offset=0.5)
    FaissSearch(again, index_dir=tmp_path, show_progress_bar=False).search(CORPUS, QUERIES, 3, "dot")
    assert again.corpus_calls == 1  # not even its own


def test_an_explicitly_loaded_index_of_another_model_is_rebuilt(tiny, tmp_path, caplog):
    a, b = _pt2dpr(tiny, seed=0), _pt2dpr(tiny, seed=1)
    _faiss(a, tmp_path).search(CORPUS, QUERIES, 5, "dot")
    with caplog.at_level(logging.WARNING, logger=FAISS_LOG):
        run = FaissSearch.load(tmp_path, b, show_progress_bar=False).search(CORPUS, QUERIES, 5, "dot")
    _assert_same_run(run, _faiss(b).search(CORPUS, QUERIES, 5, "dot"))
    assert "loaded from" in caplog.text


# ----------------------------------------------------------------------------- MaxSim index_dir
def test_maxsim_index_is_rebuilt_for_changed_texts_under_the_same_ids(tiny, tmp_path, monkeypatch, caplog):
    torch.manual_seed(0)
    model = PT2ColBERT(tiny, gate=False, init="random", prefix_length=4, dim=16)
    folder = tmp_path / "index"
    MaxSimSearch(model, index_dir=folder, show_progress_bar=False).search(CORPUS, QUERIES, top_k=3)
    with monkeypatch.context() as patch:  # unchanged: reused
        patch.setattr(model, "encode_doc_token_lists", _refuse)
        MaxSimSearch(model, index_dir=folder, show_progress_bar=False).search(CORPUS, QUERIES, top_k=3)
    edited = {**CORPUS, "d5": {"title": "", "text": QUERIES["q2"]}}
    with caplog.at_level(logging.WARNING, logger=MAXSIM_LOG):
        run = MaxSimSearch(model, index_dir=folder, show_progress_bar=False).search(edited, QUERIES, top_k=3)
    expected = MaxSimSearch(model, show_progress_bar=False).search(edited, QUERIES, top_k=3)
    _assert_same_run(run, expected)
    assert "corpus (doc ids or texts)" in caplog.text
    from beir_peft.search.corpus import corpus_digest

    assert json.loads((folder / META_FILE).read_text())["corpus_sha256"] == corpus_digest(
        *sanitize_corpus(edited)
    )
