"""Shared fixtures: offline model loading, the real datasets in ../shared/datasets, no network."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: the backbone comes from its installed offline copy.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

#: the repository root (the folder holding beir_peft/ and tests/)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: real BEIR-format datasets shared beside the repository (never copied into it)
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
#: a URL template nothing listens on: a download attempt fails at once instead of reaching out
UNREACHABLE_URL = "http://127.0.0.1:9/{name}.zip"

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def pytest_addoption(parser):
    parser.addoption(
        "--proof",
        action="store_true",
        help="also run the tests marked proof: the real-data training runs behind docs/results.md's oracle "
        "tables (tens of CPU-minutes; .ci/run runs them after the default suite)",
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``proof`` run only with ``--proof``: the default suite stays minutes long."""
    if config.getoption("--proof"):
        return
    skip = pytest.mark.skip(reason="a proof run (tens of CPU-minutes): pass --proof to run it")
    for item in items:
        if "proof" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_datasets() -> Path:
    """``../shared/datasets`` relative to the repository root; skips the test when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATASETS} does not exist")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (its offline copy), loaded once per session."""
    from beir_peft.encoders.backbone import load_backbone

    return load_backbone()


@pytest.fixture
def no_network_data(tmp_path_factory, monkeypatch) -> Path:
    """An empty dataset cache and an unreachable download URL, so no test touches the network.

    ``$BEIR_PEFT_DATA`` is unset (a test sets it when it wants one) and proxies are cleared so the
    unreachable URL is refused locally. Returns the cache root (``$BEIR_PEFT_CACHE``).
    """
    cache = tmp_path_factory.mktemp("beir_peft_cache")
    monkeypatch.setenv("BEIR_PEFT_CACHE", str(cache))
    monkeypatch.setenv("BEIR_PEFT_DATASET_URL", UNREACHABLE_URL)
    monkeypatch.delenv("BEIR_PEFT_DATA", raising=False)
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return cache


#: SciFact test as the oracle-teacher tests evaluate it: every test query (300), over the passages
#: judged for them plus seeded random others up to this many, encoded at this length
SCIFACT_SLICE_DOCS = 1000
SCIFACT_SLICE_MAX_SEQ_LENGTH = 32


@pytest.fixture(scope="session")
def scifact_zero_shot_slice():
    """The zero-shot all-MiniLM-L6-v2 (its own cosine) on a slice of SciFact test, evaluated once.

    Returns ``{"data": BeirDataset, "result": EvaluationResult, "max_seq_length": int}``: all 300
    test queries over :data:`SCIFACT_SLICE_DOCS` passages (the judged ones first), passages and
    queries truncated at :data:`SCIFACT_SLICE_MAX_SEQ_LENGTH` tokens. Evaluate a trained model on
    ``data`` at the same length and test its per-query nDCG@10 against ``result``'s. Skipped when
    ../shared/datasets is absent.
    """
    import random

    from beir_peft.data import BeirDataset, load_dataset
    from beir_peft.evaluation import evaluate_retriever
    from beir_peft.models.loading import load_model

    if not (SHARED_DATASETS / "scifact").is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATASETS / 'scifact'} does not exist")
    test = load_dataset(SHARED_DATASETS / "scifact", split="test")
    judged = sorted({doc for docs in test.qrels.values() for doc in docs})
    others = sorted(set(test.corpus) - set(judged))
    kept = judged + random.Random(0).sample(others, max(0, SCIFACT_SLICE_DOCS - len(judged)))
    data = BeirDataset(
        test.name, test.path, "test", {doc: test.corpus[doc] for doc in kept}, test.queries, test.qrels
    )
    model = load_model()
    model.model.max_seq_length = SCIFACT_SLICE_MAX_SEQ_LENGTH
    result = evaluate_retriever(
        model, data.corpus, data.queries, data.qrels, k_values=[10], show_progress_bar=False
    )
    return {"data": data, "result": result, "max_seq_length": SCIFACT_SLICE_MAX_SEQ_LENGTH}
