"""BM25Search: Lucene BM25 scores by hand, BEIR's evaluator, and BM25 hard negatives."""

from __future__ import annotations

import math

import pytest
from beir.retrieval.evaluation import EvaluateRetrieval

from beir_peft.errors import ConfigError
from beir_peft.search.bm25 import BM25Search

CORPUS = {
    "d1": {"title": "Cats", "text": "a cat sat on the mat"},
    "d2": {"title": "", "text": "dogs are running fast, dogs bark"},
    "d3": {"title": "Foxes", "text": "the quick brown fox"},
    "d4": {"title": None, "text": "cat and dog"},
}


def lucene_bm25(query_terms, doc_terms, corpus_terms, k1=1.2, b=0.75):
    """Lucene's BM25: idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf saturation with length norm."""
    n = len(corpus_terms)
    avgdl = sum(len(d) for d in corpus_terms) / n
    score = 0.0
    for term in set(query_terms):
        tf = doc_terms.count(term)
        if not tf:
            continue
        df = sum(term in d for d in corpus_terms)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        score += idf * tf / (tf + k1 * (1 - b + b * len(doc_terms) / avgdl))
    return score


def test_scores_equal_lucene_bm25_by_hand():
    search = BM25Search(stemmer=None, stopwords=None, show_progress_bar=False)
    results = search.search(CORPUS, {"q": "cat dogs"}, top_k=10)
    # bm25s' default tokeniser: lower-case words of two or more characters
    terms = {
        "d1": ["cats", "cat", "sat", "on", "the", "mat"],
        "d2": ["dogs", "are", "running", "fast", "dogs", "bark"],
        "d3": ["foxes", "the", "quick", "brown", "fox"],
        "d4": ["cat", "and", "dog"],
    }
    expected = {d: lucene_bm25(["cat", "dogs"], t, list(terms.values())) for d, t in terms.items()}
    assert set(results["q"]) == {d for d, s in expected.items() if s > 0} == {"d1", "d2", "d4"}
    for doc, score in results["q"].items():
        assert score == pytest.approx(expected[doc], rel=1e-5)


def test_stemming_and_no_match():
    search = BM25Search(show_progress_bar=False)
    results = search.search(CORPUS, {"q1": "running dog", "q2": "zebra", "q3": "the"}, top_k=3)
    assert list(results["q1"]) == ["d2", "d4"]  # "running dog" -> run, dog; d2 has both
    assert results["q2"] == {} and results["q3"] == {}  # unknown word; stop word only


def test_with_beirs_evaluator():
    retriever = EvaluateRetrieval(BM25Search(show_progress_bar=False), k_values=[1, 3])
    results = retriever.retrieve(CORPUS, {"q": "quick fox"})
    assert next(iter(results["q"])) == "d3"
    ndcg, *_ = retriever.evaluate({"q": {"d3": 1}}, results, [1, 3])
    assert ndcg["NDCG@1"] == 1.0


def test_bad_input():
    with pytest.raises(ConfigError, match="k1"):
        BM25Search(k1=0)
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Search(stemmer="klingon")
    search = BM25Search(show_progress_bar=False)
    with pytest.raises(ConfigError, match="empty"):
        search.search({}, {"q": "x"}, 1)
    with pytest.raises(ConfigError, match="no queries"):
        search.search(CORPUS, {}, 1)


def test_negatives_are_mined_past_many_relevant_passages(tmp_path):
    """A query with more relevant passages than the mining depth still gets its negatives (TREC-style qrels)."""
    from beir_peft.data import BeirDataset
    from beir_peft.methods.supervised import mine_hard_negatives

    corpus = {f"r{i}": {"title": "", "text": f"apple pie recipe {i}"} for i in range(20)}
    corpus.update({f"n{i}": {"title": "", "text": f"apple orchard {i}"} for i in range(5)})
    qrels = {"q": {f"r{i}": 1 for i in range(20)}}
    data = BeirDataset("toy", tmp_path, "train", corpus, {"q": "apple pie recipe"}, qrels)
    negatives = mine_hard_negatives(BM25Search(show_progress_bar=False), data, depth=3)
    assert len(negatives["q"]) == 3 and all(doc.startswith("n") for doc in negatives["q"])
