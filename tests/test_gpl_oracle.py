"""GPL's training signal reaches the student, in the right direction: oracle teachers on real SciFact.

No T5 or cross-encoder weights exist offline, so the two teachers are replaced (docs/gpl.md, "The
teacher is injectable"): the generated queries by the SciFact **train** questions, each with its
relevant passage as source passage, and the cross-encoder by :class:`OracleLabeler` from the SciFact
train qrels (``inverted``: the anti-oracle). The rest is ``run_gpl`` as users run it, on the real
all-MiniLM-L6-v2 (the backbone itself mines the hard negatives, MarginMSE on the dot product,
un-normalised student). Evaluated on every SciFact **test** query over a corpus slice
(``scifact_zero_shot_slice`` in conftest.py). The budget is docs/results.md's "GPL with oracle
teachers" (docs/experiments/gpl_oracle.py's defaults): the same runs, asserted.

Marked ``integration``; skipped when ../shared/datasets is absent.
"""

from __future__ import annotations

import json
import shutil

import pytest

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import load_dataset
from beir_peft.encoders.backbone import DEFAULT_BACKBONE
from beir_peft.evaluation import evaluate_retriever
from beir_peft.methods.gpl import GPLConfig, OracleLabeler, oracle_queries, run_gpl
from beir_peft.methods.gpl.pipeline import NEGATIVES_FILE, QUERIES_FILE, SAMPLE_FILE

pytestmark = pytest.mark.integration

#: per student: training steps (batch BATCH_SIZE) and learning rate
BUDGET = {"ft": (40, 2e-5), "pt2-dpr": (40, 3e-3)}
BATCH_SIZE = 8
SHARED_STAGES = (SAMPLE_FILE, QUERIES_FILE, NEGATIVES_FILE)


@pytest.fixture(scope="module")
def scifact_train(tmp_path_factory):
    """SciFact train, a GPL queries file of its (question, relevant passage) pairs, and a folder
    where the first run leaves stages 0-2 (they depend on neither student nor teacher)."""
    from conftest import SHARED_DATASETS

    if not (SHARED_DATASETS / "scifact").is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATASETS / 'scifact'} does not exist")
    train = load_dataset(SHARED_DATASETS / "scifact", split="train")
    path = tmp_path_factory.mktemp("gpl_oracle") / "queries.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in oracle_queries(train.qrels, train.queries)))
    return train, path, path.parent


def _train_and_test(student, inverted, scifact_train, reference, folder):
    train, queries_file, stages = scifact_train
    folder.mkdir(parents=True)
    for name in SHARED_STAGES:  # mined once per module: the pipeline reuses a stage's output
        if (stages / name).is_file():
            shutil.copyfile(stages / name, folder / name)
    steps, learning_rate = BUDGET[student]
    length = reference["max_seq_length"]
    config = GPLConfig(
        preset="tiny", student=student, miners=[DEFAULT_BACKBONE], mining_max_seq_length=length,
        negatives_per_miner=30, steps=steps, warmup_steps=steps // 10, batch_size=BATCH_SIZE,
        learning_rate=learning_rate, max_seq_length=length, checkpoint_every=0, device="cpu",
    )  # fmt: skip
    labeler = OracleLabeler(train.qrels, train.queries, inverted=inverted, source="scifact train")
    out = run_gpl(train.corpus, folder, config, queries_file=queries_file, dataset_name="scifact",
                  labeler=labeler, show_progress_bar=False)  # fmt: skip
    for name in SHARED_STAGES:
        if not (stages / name).is_file():
            shutil.copyfile(out / name, stages / name)
    model = beir_peft.load(out)
    assert model.config.normalize is False and model.score_function == "dot"
    data = reference["data"]
    result = evaluate_retriever(model, data.corpus, data.queries, data.qrels, k_values=[10],
                                show_progress_bar=False)  # fmt: skip
    zero_shot = reference["result"].per_query_ndcg10
    return paired_t_test(zero_shot, result.per_query_ndcg10, data.queries)


@pytest.mark.parametrize("student", ["ft", "pt2-dpr"])
@pytest.mark.xfail(
    reason="not reached: 40 steps of 8 give ft -0.013; 300 steps of 16 give +0.032 but p=0.058 (10+ CPU-minutes, "
    "too long for the suite): docs/results.md, GPL with oracle teachers",
    run=False,
)
def test_the_oracle_lifts_the_student_above_zero_shot(
    student, scifact_train, scifact_zero_shot_slice, tmp_path
):
    oracle = _train_and_test(student, False, scifact_train, scifact_zero_shot_slice, tmp_path / "oracle")
    assert oracle.delta > 0 and oracle.p_value < 0.05, oracle


@pytest.mark.parametrize(
    "student",
    [
        "ft",
        pytest.param(
            "pt2-dpr",
            marks=pytest.mark.xfail(
                reason="measured: -0.0139 (p=0.11) at this budget; the gated prompt moves too little in 40 "
                "steps (docs/results.md, GPL with oracle teachers)",
                run=False,
            ),
        ),
    ],
)
def test_the_anti_oracle_sinks_the_student_below_zero_shot(
    student, scifact_train, scifact_zero_shot_slice, tmp_path
):
    anti = _train_and_test(student, True, scifact_train, scifact_zero_shot_slice, tmp_path / "anti")
    assert anti.delta < 0 and anti.p_value < 0.05, anti  # the dot student starts at -0.009 (n.s.)
