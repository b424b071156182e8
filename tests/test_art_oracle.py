"""ART's training signal reaches the student: oracle teachers on real SciFact with the real MiniLM.

The teacher is :class:`QrelsOracleTeacher` built from SciFact **train** qrels (and its inversion);
everything else is ART as users run it (``train_art``: retrieval from the index the loop encodes,
top-K, teacher scores through the cache, KL, the saved folder, ``beir_peft.load``) and the package's
evaluation with a paired t-test. Oracle training must end above the zero-shot backbone on SciFact
**test** nDCG@10 (p < 0.05) and anti-oracle training below it.

The anti-oracle test fits the default suite: the corpus is the SciFact abstracts judged for any train
or test question plus the first others in corpus order (``EXTRA_PASSAGES``), all truncated at
``MAX_SEQ_LENGTH`` tokens for the zero-shot reference and the students alike. The oracle's lift needs
more: the ``proof`` test runs docs/results.md's full-corpus experiment ("ART with oracle teachers",
docs/experiments/art_oracle.py) with ``--proof``.
Marked ``integration``; skipped when ../shared/datasets is absent.
"""

from __future__ import annotations

import json

import pytest

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import load_dataset
from beir_peft.evaluation import evaluate_retriever
from beir_peft.methods.art import ARTConfig, QrelsOracleTeacher, train_art
from beir_peft.models.tuned import build_retriever

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_network_data")]

MAX_SEQ_LENGTH = 64
EXTRA_PASSAGES = 600
# 20 steps of 8 questions: at ART's lr for ft (2e-5) the oracle moved nDCG@10 by +0.0006 (p = 0.94); at 1e-4
# the anti-oracle by -0.67 and the oracle by -0.09 (docs/results.md, "ART with oracle teachers"); measured with
# every question trained on, before the adaptation check held any out
SETTINGS = {"student": "ft", "max_seq_length": MAX_SEQ_LENGTH, "top_k": 8, "batch_size": 8, "max_steps": 20,
            "learning_rate": 1e-4, "refresh_every": 10**6, "checkpoint_every": 0, "warmup_ratio": 0.1,
            "device": "cpu", "held_out_questions": 0}  # fmt: skip


@pytest.fixture(scope="module")
def scifact():
    from conftest import SHARED_DATASETS

    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATASETS} does not exist")
    train = load_dataset(SHARED_DATASETS / "scifact", split="train")
    test = load_dataset(SHARED_DATASETS / "scifact", split="test")
    judged = {
        doc for qrels in (train.qrels, test.qrels) for judgements in qrels.values() for doc in judgements
    }
    others = [doc for doc in train.corpus if doc not in judged][:EXTRA_PASSAGES]
    keep = judged | set(others)
    corpus = {doc: text for doc, text in train.corpus.items() if doc in keep}
    return train, test, corpus


def evaluate_on_test(model, test, corpus):
    return evaluate_retriever(
        model, corpus, test.queries, test.qrels, k_values=(10,), show_progress_bar=False
    )


@pytest.fixture(scope="module")
def zero_shot(scifact):
    _, test, corpus = scifact
    return evaluate_on_test(build_retriever("ft", max_seq_length=MAX_SEQ_LENGTH), test, corpus)


def art_with(scifact, tmp_path_factory, inverted: bool):
    train, test, corpus = scifact
    teacher = QrelsOracleTeacher.from_dataset(train, inverted=inverted)
    out = train_art(train.queries, corpus, tmp_path_factory.mktemp("art_oracle") / "run", ARTConfig(**SETTINGS),
                    teacher=teacher, dataset_name="scifact", show_progress_bar=False)  # fmt: skip
    model = beir_peft.load(out)
    assert model.score_function == "dot"
    record = json.loads((out / "config.json").read_text())["training"]
    assert record["teacher_kind"] == ("anti-oracle" if inverted else "oracle")
    assert record["student_temperature"] == 0.05  # unit vectors: all-MiniLM-L6-v2 keeps its Normalize
    return evaluate_on_test(model, test, corpus)


def versus_zero_shot(zero_shot, trained, test):
    return paired_t_test(zero_shot.per_query_ndcg10, trained.per_query_ndcg10, test.qrels)


def test_anti_oracle_teacher_pushes_art_below_zero_shot(scifact, zero_shot, tmp_path_factory):
    result = versus_zero_shot(zero_shot, art_with(scifact, tmp_path_factory, inverted=True), scifact[1])
    assert result.delta < 0, result


#: docs/results.md's full-corpus run ("ART with oracle teachers", docs/results/art_oracle_300x8/): 300 steps of 8
#: at ART's lr for ``ft``, over all 5,183 abstracts; measured +0.099 (p = 4e-13). About 15 CPU-minutes.
PROOF_SETTINGS = SETTINGS | {"max_steps": 300, "learning_rate": 2e-5}


@pytest.mark.proof
def test_oracle_teacher_lifts_art_above_zero_shot_on_the_full_corpus(scifact, tmp_path_factory):
    """The reduced-corpus budget above is too small for the oracle's lift (+0.0006 at 20 steps, lr 2e-5):
    the proof is the full-corpus run, asserted."""
    train, test, _ = scifact
    zero_shot = evaluate_on_test(build_retriever("ft", max_seq_length=MAX_SEQ_LENGTH), test, train.corpus)
    teacher = QrelsOracleTeacher.from_dataset(train)
    out = train_art(train.queries, train.corpus, tmp_path_factory.mktemp("art_proof") / "run",
                    ARTConfig(**PROOF_SETTINGS), teacher=teacher, dataset_name="scifact",
                    show_progress_bar=False)  # fmt: skip
    result = versus_zero_shot(zero_shot, evaluate_on_test(beir_peft.load(out), test, train.corpus), test)
    assert result.delta > 0.05 and result.p_value < 0.05, result
