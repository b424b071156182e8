"""QGen, GPL's baseline: GPL's generated queries, in-batch negatives, one epoch; the folder evaluates.

The generator is the tiny random T5 of test_gpl.py and the student a tiny BERT; the oracle path (the
SciFact train questions as the generated queries, on the real MiniLM) is at the end.
"""

from __future__ import annotations

import json
import math

import pytest
from tiny_models import build_tiny_bert, build_tiny_cross_encoder, build_tiny_t5

import beir_peft
from beir_peft.cli import main
from beir_peft.data import load_corpus, load_dataset
from beir_peft.errors import ConfigError
from beir_peft.evaluation import evaluate_retriever
from beir_peft.methods.gpl import GPLConfig, QGenConfig, run_gpl, run_qgen
from beir_peft.methods.gpl.pipeline import QUERIES_FILE, SAMPLE_FILE
from beir_peft.methods.gpl.qgen import CONFIG_FILE
from beir_peft.training.adaptation_check import recorded_check

pytestmark = pytest.mark.usefixtures("no_network_data")

#: the generation settings QGen and GPL share here
GENERATION = {"preset": "tiny", "queries_per_passage": 2, "num_passages": 20, "max_query_length": 8,
              "max_seq_length": 64, "shard_size": 8, "device": "cpu"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("qgen_models")
    return {
        "t5": str(build_tiny_t5(root / "t5")),
        "ce": str(build_tiny_cross_encoder(root / "ce")),
        "bert": str(build_tiny_bert(root / "bert")),
    }


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(beir_peft.data.demo_dataset_path())


def qgen_config(tiny, **overrides) -> QGenConfig:
    settings = {**GENERATION, "student": "pt2-dpr", "backbone": tiny["bert"], "generator": tiny["t5"],
                "batch_size": 4, "checkpoint_every": 2}  # fmt: skip
    return QGenConfig(**{**settings, **overrides})


def test_qgen_generates_gpl_s_queries_and_trains_one_epoch_of_in_batch_negatives(tiny, corpus, tmp_path):
    qgen = run_qgen(corpus, tmp_path / "qgen", qgen_config(tiny), show_progress_bar=False)
    gpl_config = GPLConfig(**GENERATION, student="pt2-dpr", backbone=tiny["bert"], generator=tiny["t5"],
                           cross_encoder=tiny["ce"], miners=["bm25"], negatives_per_miner=3, steps=2,
                           warmup_steps=0, batch_size=4)  # fmt: skip
    gpl = run_gpl(corpus, tmp_path / "gpl", gpl_config, show_progress_bar=False)
    for name in (SAMPLE_FILE, QUERIES_FILE):  # the two methods share their queries, as in the paper
        assert (qgen / name).read_bytes() == (gpl / name).read_bytes(), name

    pairs = len((qgen / QUERIES_FILE).read_text().splitlines())
    assert pairs == 40
    record = json.loads((qgen / "config.json").read_text())["training"]
    assert record["method"] == "qgen" and record["split"] == "qgen" and record["epochs"] == 1
    # a tenth of the queries held out for the adaptation check: GPL's very ones
    assert record["adaptation_check"]["held_out_queries"] == 4 and record["pairs"] == pairs - 4
    gpl_check = json.loads((gpl / "config.json").read_text())["training"]["adaptation_check"]
    assert gpl_check["held_out_queries"] == 4 and gpl_check["start"] == record["adaptation_check"]["start"]
    assert record["steps"] == (pairs - 4) // 4  # one epoch of batch 4 (the last short batch dropped)
    assert record["scale"] == 20.0 and record["warmup_ratio"] == 0.1 and record["hard_negatives"] == 0
    model = beir_peft.load(qgen)
    assert model.method == "pt2-dpr" and model.score_function == "cos_sim" and model.config.normalize is True
    data = load_dataset("demo")
    result = evaluate_retriever(
        model, data.corpus, data.queries, data.qrels, k_values=[10], show_progress_bar=False
    )
    assert 0 <= result.metrics["NDCG@10"] <= 1
    assert math.isfinite(record["first_loss"]) and math.isfinite(record["last_loss"])


def test_qgen_trains_on_a_gpl_run_s_queries_file_and_resumes_only_its_own_settings(tiny, corpus, tmp_path):
    gpl_queries = tmp_path / "gpl_queries.jsonl"
    rows = [
        {"_id": f"q{i}", "text": f"question {i}", "doc_id": doc} for i, doc in enumerate(list(corpus)[:12])
    ]
    gpl_queries.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = qgen_config(tiny, sampler="no-duplicates")
    out = run_qgen(corpus, tmp_path / "run", config, queries_file=gpl_queries, show_progress_bar=False)
    assert [json.loads(line) for line in (out / QUERIES_FILE).read_text().splitlines()] == rows
    assert json.loads((out / CONFIG_FILE).read_text())["queries_file"] == str(gpl_queries)
    weights = (out / "weights.safetensors").read_bytes()

    # the same command returns the finished folder; other settings are refused with one line
    assert run_qgen(corpus, out, config, queries_file=gpl_queries, show_progress_bar=False) == out
    assert (out / "weights.safetensors").read_bytes() == weights
    with pytest.raises(ConfigError, match=r"batch_size: 4 -> 6"):
        run_qgen(
            corpus, out, qgen_config(tiny, sampler="no-duplicates", batch_size=6), queries_file=gpl_queries
        )
    retrained = run_qgen(corpus, out, qgen_config(tiny, batch_size=6), queries_file=gpl_queries,
                         overwrite=True, show_progress_bar=False)  # fmt: skip
    assert json.loads((retrained / "config.json").read_text())["training"]["batch_size"] == 6


def test_bad_qgen_settings():
    with pytest.raises(ConfigError, match="sampler"):
        QGenConfig(sampler="random")
    with pytest.raises(ConfigError, match="batch_size"):
        QGenConfig(batch_size=1)
    with pytest.raises(ConfigError, match="students"):
        QGenConfig(student="bm25")
    assert QGenConfig().total_queries == 250_000 and QGenConfig(preset="small").total_queries == 50_000
    paper = QGenConfig()
    assert (paper.epochs, paper.batch_size, paper.scale, paper.sampler) == (1, 75, 20.0, "shuffle")


def test_cli_adapt_qgen(tiny, tmp_path, capsys):
    args = ["adapt", "qgen", "-d", "demo", "-o", str(tmp_path / "run"), "--preset", "tiny", "--student", "ft",
            "--backbone", tiny["bert"], "--generator", tiny["t5"], "--queries-per-passage", "1",
            "--num-passages", "12", "--batch-size", "4", "--max-steps", "2", "--set", "max_query_length=8",
            "--set", "max_seq_length=64", "--device", "cpu", "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "evaluate with" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "run"), "-q", "--k-values", "10"]) == 0
    capsys.readouterr()
    assert main([*args[:-1], "--set", "nonsense=1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "Traceback" not in err
    assert (
        main([*args[:-1], "--queries", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "r2"), "-q"])
        == 2
    )
    err = capsys.readouterr().err
    assert "missing queries file" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- the oracle path
def _oracle_run(scifact_zero_shot_slice, tmp_path, mismatched: bool):
    """QGen with the SciFact train questions as its "generated" queries, each with its judged passage
    (the oracle generator, as in test_gpl_oracle.py) or, ``mismatched``, with another question's
    passage; the real MiniLM ``ft`` student, one epoch of 32; the paired t-test against zero-shot."""
    from conftest import SHARED_DATASETS

    from beir_peft.analysis.significance import paired_t_test
    from beir_peft.methods.gpl import oracle_queries

    train = load_dataset(SHARED_DATASETS / "scifact", split="train")
    rows = oracle_queries(train.qrels, train.queries)
    if mismatched:  # every question moved to the passage of the row half the file away
        half = len(rows) // 2
        rows = [{**row, "doc_id": rows[(i + half) % len(rows)]["doc_id"]} for i, row in enumerate(rows)]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    length = scifact_zero_shot_slice["max_seq_length"]
    config = QGenConfig(preset="tiny", student="ft", batch_size=32, max_seq_length=length, checkpoint_every=0,
                        device="cpu")  # fmt: skip
    out = run_qgen(train.corpus, tmp_path / "run", config, queries_file=path, dataset_name="scifact",
                   show_progress_bar=False)  # fmt: skip
    data = scifact_zero_shot_slice["data"]
    result = evaluate_retriever(beir_peft.load(out), data.corpus, data.queries, data.qrels, k_values=[10],
                                show_progress_bar=False)  # fmt: skip
    zero_shot = scifact_zero_shot_slice["result"].per_query_ndcg10
    return paired_t_test(zero_shot, result.per_query_ndcg10, data.queries), recorded_check(out)


@pytest.mark.integration
def test_oracle_queries_lift_qgen_above_zero_shot(scifact_zero_shot_slice, tmp_path):
    oracle, check = _oracle_run(scifact_zero_shot_slice, tmp_path, mismatched=False)
    assert oracle.delta > 0 and oracle.p_value < 0.05, oracle
    assert check["held_out_queries"] == 91 and check["better"], check  # a tenth of the 919 pairs


@pytest.mark.integration
def test_mismatched_queries_sink_qgen_below_zero_shot(scifact_zero_shot_slice, tmp_path):
    anti, _ = _oracle_run(
        scifact_zero_shot_slice, tmp_path, mismatched=True
    )  # its held-out pairs are wrong too
    assert anti.delta < 0 and anti.p_value < 0.05, anti
