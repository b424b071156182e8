"""GPL: the 250K rule, each stage on a small corpus, the MarginMSE loss, resume, and the final folder.

The generator (T5) and cross-encoder are tiny random models built here; the student and a miner are
a tiny random BERT (and BM25). The real MiniLM runs in the SciFact integration test at the end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_bert, build_tiny_cross_encoder, build_tiny_t5

import beir_peft
from beir_peft.cli import main
from beir_peft.data import load_corpus, load_dataset
from beir_peft.errors import ConfigError, DatasetError
from beir_peft.evaluation import evaluate_retriever
from beir_peft.losses import DualEncoderMarginMSELoss
from beir_peft.methods.gpl import DenseMarginLabeler, GPLConfig, gpl_sizing, run_gpl
from beir_peft.methods.gpl.pipeline import NEGATIVES_FILE, QUERIES_FILE, SAMPLE_FILE, TRAINING_FILE
from beir_peft.methods.gpl.pseudo_labels import PseudoLabeler, draw_triples
from beir_peft.methods.gpl.query_generation import GenerationSettings, QueryGenerator, generate_queries
from beir_peft.methods.gpl.sizing import sample_passages
from beir_peft.training.adaptation_check import held_out_sample, summary

pytestmark = pytest.mark.usefixtures("no_network_data")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Paths of a tiny T5 generator, cross-encoder and sentence-transformers BERT (built once)."""
    root = tmp_path_factory.mktemp("gpl_models")
    return {
        "t5": str(build_tiny_t5(root / "t5")),
        "ce": str(build_tiny_cross_encoder(root / "ce")),
        "bert": str(build_tiny_bert(root / "bert")),
        # ends with Normalize, as all-MiniLM-L6-v2 does
        "bert_norm": str(build_tiny_bert(root / "bert_norm", normalize=True)),
    }


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(beir_peft.data.demo_dataset_path())


def tiny_config(tiny, **overrides) -> GPLConfig:
    settings = {
        "preset": "tiny", "student": "pt2-dpr", "backbone": tiny["bert"], "generator": tiny["t5"],
        "cross_encoder": tiny["ce"], "miners": [tiny["bert"], "bm25"], "negatives_per_miner": 5,
        "queries_per_passage": 2, "num_passages": 20, "steps": 4, "warmup_steps": 1, "batch_size": 4,
        "max_query_length": 8, "max_seq_length": 64, "shard_size": 8, "checkpoint_every": 2, "device": "cpu",
    }  # fmt: skip
    return GPLConfig(**{**settings, **overrides})


# ------------------------------------------------------------------------------- the 250K rule
def test_sizing_follows_the_paper():
    assert gpl_sizing(57_638) == (57_638, 5)  # FiQA: 5 queries per passage
    assert gpl_sizing(528_155) == (83_334, 3)  # Robust04: down-sampled to 83.3K, 3 each
    assert gpl_sizing(5_183) == (5_183, 49)  # SciFact: ceil(250K / 5183)
    assert gpl_sizing(83_334) == (83_334, 3)  # exactly at the edge
    assert gpl_sizing(1_000, total_queries=1_000) == (334, 3)  # a smaller budget, the same rule
    assert gpl_sizing(100, queries_per_passage=7) == (100, 7)  # explicit values override
    assert gpl_sizing(100, num_passages=10) == (10, 25000)
    assert gpl_sizing(100, num_passages=1_000) == (100, 2500)  # never more passages than the corpus
    with pytest.raises(ConfigError, match="at least one passage"):
        gpl_sizing(0)


def test_passage_sample_is_seeded_and_ordered():
    ids = [f"d{i}" for i in range(100)]
    a, b = sample_passages(ids, 10, seed=1), sample_passages(ids, 10, seed=1)
    assert a == b and len(set(a)) == 10 and a == sorted(a, key=ids.index)
    assert sample_passages(ids, 200) == ids


# ------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_margin_mse_equals_a_hand_computation(similarity):
    torch.manual_seed(0)
    vectors = {"query": torch.randn(3, 4), "passage": torch.randn(6, 4)}

    def model(features, side):
        return features["x"] @ torch.eye(4) if side == "query" else features["x"] * 1.0

    q = {"x": vectors["query"].requires_grad_()}
    pos, neg = {"x": vectors["passage"][:3]}, {"x": vectors["passage"][3:]}
    margins = torch.tensor([1.0, -0.5, 2.0])
    loss = DualEncoderMarginMSELoss(model, similarity=similarity)([q, pos, neg], margins)
    a, p, n = q["x"].detach(), pos["x"], neg["x"]
    if similarity == "cosine":
        a, p, n = (torch.nn.functional.normalize(t, dim=-1) for t in (a, p, n))
    expected = (((a * p).sum(-1) - (a * n).sum(-1) - margins) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert q["x"].grad is not None and q["x"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="similarity"):
        DualEncoderMarginMSELoss(model, similarity="l2")


# ------------------------------------------------------------------------------- stages
def test_generation_ids_positives_and_shards(tiny, corpus):
    generator = QueryGenerator(
        tiny["t5"], device="cpu", settings=GenerationSettings(max_query_length=8, batch_size=4)
    )
    ids = list(corpus)[:8]
    whole = list(generate_queries(generator, corpus, ids, 2, seed=3))
    shards = list(generate_queries(generator, corpus, ids[:4], 2, 3)) + list(
        generate_queries(generator, corpus, ids[4:], 2, 3, first_position=4)
    )
    assert whole == shards  # same ids and the same draws, however the list is cut
    assert {row["doc_id"] for row in whole} <= set(ids) and len({row["_id"] for row in whole}) == len(whole)
    assert all(row["text"] for row in whole) and len(whole) <= 16


def test_margins_are_cross_encoder_differences(tiny, corpus):
    labeler = PseudoLabeler(tiny["ce"], max_length=64, device="cpu")
    queries = {"q1": "what causes rain", "q2": "how do vaccines work"}
    docs = list(corpus)
    triples = [("q1", docs[0], docs[1]), ("q2", docs[2], docs[3])]
    margins = labeler.margins(triples, queries, corpus)
    for (q, p, n), margin in zip(triples, margins, strict=True):
        text = lambda d: (corpus[d]["title"] + " " + corpus[d]["text"]).strip()  # noqa: E731
        pos, neg = labeler.scores([(queries[q], text(p)), (queries[q], text(n))])
        assert margin == pytest.approx(pos - neg, abs=1e-5)
    # raw logits, not sigmoid probabilities
    raw = labeler.model.model(**labeler.model.tokenizer(["x"], ["y"], return_tensors="pt")).logits.item()
    assert labeler.scores([("x", "y")])[0] == pytest.approx(raw, abs=1e-5)


def test_triples_cover_queries_and_skip_those_without_negatives():
    negatives = {"a": {"m1": ["d1", "d2"], "m2": ["d3"]}, "b": {"m1": ["d4"]}, "c": {"m1": []}}
    triples = draw_triples(["a", "b", "c"], {"a": "pa", "b": "pb", "c": "pc"}, negatives, count=7, seed=0)
    assert len(triples) == 7 and {t[0] for t in triples} == {"a", "b"}
    for q, p, n in triples:
        assert p == {"a": "pa", "b": "pb"}[q] and n in {d for docs in negatives[q].values() for d in docs}
    assert triples == draw_triples(["a", "b", "c"], {"a": "pa", "b": "pb", "c": "pc"}, negatives, 7, 0)
    with pytest.raises(DatasetError, match="no generated query has a hard negative"):
        draw_triples(["c"], {"c": "pc"}, negatives, 3, 0)


# ------------------------------------------------------------------------------- the pipeline
def test_pipeline_end_to_end_and_the_folder_evaluates(tiny, corpus, tmp_path):
    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny), show_progress_bar=False)
    sample = json.loads((out / SAMPLE_FILE).read_text())
    assert len(sample["doc_ids"]) == 20 and sample["queries_per_passage"] == 2
    queries = [json.loads(line) for line in (out / QUERIES_FILE).read_text().splitlines()]
    assert queries and all(q["doc_id"] in sample["doc_ids"] for q in queries)
    negatives = [json.loads(line) for line in (out / NEGATIVES_FILE).read_text().splitlines()]
    positives = {q["_id"]: q["doc_id"] for q in queries}
    for row in negatives:
        assert set(row["neg"]) == {tiny["bert"], "bm25"}
        assert all(positives[row["qid"]] not in docs for docs in row["neg"].values())
    lines = (out / TRAINING_FILE).read_text().splitlines()
    assert lines[0] == "qid\tpos\tneg\tmargin" and len(lines) == 1 + 4 * 4  # steps x batch rows
    # a tenth of the 40 queries is held out: mined, never labelled, scored by the adaptation check
    check = json.loads((out / "config.json").read_text())["training"]["adaptation_check"]
    held_out = set(_held_out_ids(queries))
    assert check["held_out_queries"] == len(held_out) == 4 and check["start_model"] == tiny["bert"]
    assert not held_out & {line.split("\t")[0] for line in lines[1:]}
    assert held_out <= {row["qid"] for row in negatives}
    assert check["better"] == (check["adapted"] > check["start"]) and 0 <= check["start"] <= 1
    assert summary(check) in (out / "README.md").read_text()
    assert not any(p.name.endswith(".parts") for p in out.iterdir())  # shards merged and removed
    model = beir_peft.load(out)
    assert model.method == "pt2-dpr"
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["method"] == "gpl" and config["training"]["steps"] == 4
    data = load_dataset("demo")
    result = evaluate_retriever(
        model, data.corpus, data.queries, data.qrels, k_values=[10], show_progress_bar=False
    )
    assert 0 <= result.metrics["NDCG@10"] <= 1


def _held_out_ids(queries: list[dict]) -> list[str]:
    return held_out_sample([q["_id"] for q in queries], 200, 42)


def test_no_held_out_queries_no_check(tiny, corpus, tmp_path):
    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny, held_out_queries=0, steps=2, warmup_steps=0),
                  show_progress_bar=False)  # fmt: skip
    assert "adaptation_check" not in json.loads((out / "config.json").read_text())["training"]


def test_a_killed_run_resumes_without_repeating_finished_stages(tiny, corpus, tmp_path, monkeypatch):
    config = tiny_config(tiny, student="lora")
    calls = {"margins": 0}
    original = PseudoLabeler.margins

    def dies_on_second_shard(self, triples, queries, corpus):
        calls["margins"] += 1
        if calls["margins"] == 2:
            raise KeyboardInterrupt  # the run is killed while labelling
        return original(self, triples, queries, corpus)

    monkeypatch.setattr(PseudoLabeler, "margins", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        run_gpl(corpus, tmp_path / "run", config, show_progress_bar=False)
    assert (tmp_path / "run" / QUERIES_FILE).is_file() and not (tmp_path / "run" / TRAINING_FILE).exists()
    assert len(list((tmp_path / "run" / f"{TRAINING_FILE}.parts").iterdir())) == 1  # the finished shard stays

    generated = (tmp_path / "run" / QUERIES_FILE).read_bytes()
    monkeypatch.setattr(QueryGenerator, "generate", lambda *a, **k: pytest.fail("queries generated twice"))
    monkeypatch.setattr(
        "beir_peft.methods.gpl.pipeline.mine_negatives", lambda *a, **k: pytest.fail("negatives mined twice")
    )
    out = run_gpl(corpus, tmp_path / "run", config, show_progress_bar=False)
    assert calls["margins"] == 3  # only the missing shard was labelled
    assert (out / QUERIES_FILE).read_bytes() == generated
    assert beir_peft.load(out).method == "lora"
    # a finished run returns at once
    monkeypatch.setattr(PseudoLabeler, "margins", lambda *a, **k: pytest.fail("labelled twice"))
    assert run_gpl(corpus, tmp_path / "run", config, show_progress_bar=False) == out


def test_changed_settings_are_refused_unless_overwritten(tiny, corpus, tmp_path):
    config = tiny_config(tiny, steps=2)
    run_gpl(corpus, tmp_path / "run", config, show_progress_bar=False)
    with pytest.raises(ConfigError, match="queries_per_passage: 2 -> 3"):
        run_gpl(
            corpus,
            tmp_path / "run",
            tiny_config(tiny, steps=2, queries_per_passage=3),
            show_progress_bar=False,
        )
    out = run_gpl(
        corpus, tmp_path / "run", tiny_config(tiny, steps=2, queries_per_passage=3), overwrite=True,
        show_progress_bar=False,
    )  # fmt: skip
    assert json.loads((out / SAMPLE_FILE).read_text())["queries_per_passage"] == 3


def test_user_queries_instead_of_generation(tiny, corpus, tmp_path):
    doc_ids = list(corpus)
    path = tmp_path / "queries.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"question {i}", "doc_id": d}) + "\n" for i, d in enumerate(doc_ids[:6]))
    )
    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny, generator="nowhere/none", steps=2), queries_file=path,
                  show_progress_bar=False)  # fmt: skip
    rows = [json.loads(line) for line in (out / QUERIES_FILE).read_text().splitlines()]
    assert [r["text"] for r in rows] == [f"question {i}" for i in range(6)]
    path.write_text(json.dumps({"text": "q", "doc_id": "no-such-doc"}) + "\n")
    with pytest.raises(DatasetError, match="line 1: 'doc_id' 'no-such-doc'"):
        run_gpl(corpus, tmp_path / "run2", tiny_config(tiny), queries_file=path, show_progress_bar=False)


def test_bad_settings():
    with pytest.raises(ConfigError, match="preset"):
        GPLConfig(preset="huge")
    with pytest.raises(ConfigError, match="students"):
        GPLConfig(student="bitfit")
    with pytest.raises(ConfigError, match="warmup_steps"):
        GPLConfig(steps=10, warmup_steps=10)
    assert GPLConfig().steps == 140_000 and GPLConfig().warmup_steps == 1_000  # the paper's defaults


def test_cli_adapt_gpl(tiny, tmp_path, capsys):
    args = ["adapt", "gpl", "-d", "demo", "-o", str(tmp_path / "run"), "--preset", "tiny", "--student", "pt2-dpr",
            "--backbone", tiny["bert"], "--generator", tiny["t5"], "--cross-encoder", tiny["ce"], "--miner", tiny["bert"],
            "--queries-per-passage", "1", "--num-passages", "20", "--held-out-queries", "2", "--steps", "2",
            "--batch-size", "4", "--set", "max_query_length=8", "--set", "max_seq_length=64",
            "--set", "warmup_steps=0", "--device", "cpu", "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "evaluate with" in err
    check = json.loads((tmp_path / "run" / "config.json").read_text())["training"]["adaptation_check"]
    assert check["held_out_queries"] == 2 and summary(check) in err  # the check's line, a warning or not
    assert main(["evaluate", "--model", str(tmp_path / "run"), "-q", "--k-values", "10"]) == 0
    assert main([*args[:-1], "--set", "nonsense=1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "Traceback" not in err
    assert main(["adapt", "gpl", "-d", "demo", "-o", str(tmp_path / "r2"), "--generator", str(tmp_path / "missing"),
                 "--cross-encoder", tiny["ce"], "--miner", "bm25", "--preset", "tiny", "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "query generator" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- real MiniLM
def test_scifact_slice_with_real_minilm(tiny, shared_datasets, tmp_path, monkeypatch):
    """MiniLM as student (pt2-dpr) and miner on 40 SciFact passages; tiny T5 and cross-encoder."""
    from beir_peft.encoders.backbone import DEFAULT_BACKBONE

    corpus = load_corpus(shared_datasets / "scifact")
    config = tiny_config(tiny, backbone=DEFAULT_BACKBONE, miners=[DEFAULT_BACKBONE], num_passages=40,
                         steps=3, max_seq_length=128)  # fmt: skip
    out = run_gpl(corpus, tmp_path / "run", config, dataset_name="scifact", show_progress_bar=False)
    model = beir_peft.load(out)
    assert model.config.backbone == DEFAULT_BACKBONE
    assert math.isfinite(float(model.encode_queries(["a question"], batch_size=1)[0][0]))
    weights = Path(out / "weights.safetensors").stat().st_size
    assert weights < 2_000_000  # a prompt, not a backbone


def test_tsdae_then_gpl(tiny, corpus, tmp_path):
    import random

    from beir_peft.methods.gpl.tsdae import delete_words

    rng = random.Random(0)
    kept = [len(delete_words(" ".join(["w"] * 100), 0.6, rng).split()) for _ in range(20)]
    assert 30 < sum(kept) / len(kept) < 50  # about 40% of the words survive
    assert delete_words("one", 0.99, rng) == "one"  # never empty
    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny, tsdae=True, tsdae_steps=2, steps=2),
                  show_progress_bar=False)  # fmt: skip
    assert (out / "tsdae" / "modules.json").is_file() and not (out / "tsdae.checkpoints").exists()
    assert beir_peft.load(out).config.backbone == str((out / "tsdae").resolve())


# ------------------------------------------------------------------------------- student scale, teachers
def _norms(model, texts):
    import numpy as np

    return np.linalg.norm(model.encode_queries(texts, batch_size=4), axis=1)


def test_dot_student_is_saved_as_an_unnormalised_dot_product_model(tiny, corpus, tmp_path):
    """GPL's margins are raw logit differences: a dot student must not sit on the unit sphere."""
    from beir_peft.encoders.backbone import normalizes

    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny, backbone=tiny["bert_norm"], steps=2),
                  show_progress_bar=False)  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["normalize"] is False and config["score_function"] == "dot"
    model = beir_peft.load(out)
    assert not normalizes(model.model) and model.score_function == "dot"
    assert (abs(_norms(model, ["what causes rain", "vaccines"]) - 1) > 1e-3).all()


def test_cosine_student_scores_by_cosine(tiny, corpus, tmp_path):
    config = tiny_config(tiny, student="ft", similarity="cosine", steps=2)  # tiny["bert"] has no Normalize
    out = run_gpl(corpus, tmp_path / "run", config, show_progress_bar=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["normalize"] is True and saved["score_function"] == "cos_sim"
    assert _norms(beir_peft.load(out), ["what causes rain"]) == pytest.approx(1.0, abs=1e-5)


def test_oracle_margins_are_oracle_score_differences():
    from beir_peft.methods.gpl import OracleLabeler

    qrels = {"1": {"a": 1, "b": 1, "z": 0}, "2": {"c": 2}}
    queries = {"1": "first question", "2": "second question"}
    oracle = OracleLabeler(qrels, queries)
    pipeline_queries = {"x": "first question", "y": "second question"}  # matched by text, not id
    triples = [("x", "a", "c"), ("x", "a", "b"), ("y", "c", "a"), ("y", "a", "c"), ("x", "a", "z")]
    assert oracle.margins(triples, pipeline_queries, {}) == [10.0, 0.0, 10.0, -10.0, 10.0]
    anti = OracleLabeler(qrels, queries, inverted=True)
    assert anti.margins(triples, pipeline_queries, {}) == [-10.0, 0.0, -10.0, 10.0, -10.0]
    assert anti.describe()["kind"] == "oracle" and anti.describe()["inverted"] is True
    with pytest.raises(DatasetError, match="not in its qrels"):
        oracle.margins([("q", "a", "b")], {"q": "an unknown question"}, {})
    with pytest.raises(DatasetError, match="no text"):
        OracleLabeler({"3": {"a": 1}}, queries)


def test_an_anchored_oracle_adds_its_margins_to_the_base_teachers():
    """With a base, the label is the base's margin plus the oracle's: relative to the student's start."""
    from beir_peft.methods.gpl import DenseMarginLabeler, OracleLabeler

    class Fixed:
        def __init__(self, values):
            self.values = values

        def margins(self, triples, queries, corpus):
            return list(self.values)

        def describe(self):
            return {"kind": "fixed"}

    qrels, queries = {"1": {"a": 1}}, {"1": "q one"}
    oracle = OracleLabeler(qrels, queries, high=1.0, low=-1.0, base=Fixed([0.5, -3.0]))
    assert oracle.margins([("x", "a", "b"), ("x", "b", "a")], {"x": "q one"}, {}) == [2.5, -5.0]
    assert oracle.describe()["base"] == {"kind": "fixed"}

    class Vectors:  # a dense model whose vectors are looked up by text
        score_function = "dot"
        table = {"q": [1.0, 2.0], "p": [3.0, 0.0], "n": [0.0, 1.0]}

        def encode_queries(self, texts, **kw):
            return torch.tensor([self.table[t] for t in texts])

        def encode_corpus(self, docs, **kw):
            return torch.tensor([self.table[d["text"]] for d in docs])

    corpus = {doc: {"title": "", "text": doc} for doc in ("p", "n")}
    dense = DenseMarginLabeler(Vectors(), name="vectors")
    assert dense.margins([("1", "p", "n"), ("1", "n", "p")], {"1": "q"}, corpus) == [1.0, -1.0]
    assert dense.margins([], {}, corpus) == []
    with pytest.raises(ConfigError, match="no 'dot' or 'cos_sim'"):
        DenseMarginLabeler(object(), name="thing")


def test_the_dot_student_start_is_the_backbone_without_normalize(tiny):
    start = DenseMarginLabeler.of_dot_student_start(tiny["bert_norm"], max_seq_length=16)
    assert start.retriever.score_function == "dot" and start.retriever.config.normalize is False
    assert start.retriever.config.max_seq_length == 16
    assert start.describe() == {
        "kind": "dense",
        "model": f"{tiny['bert_norm']} (no Normalize)",
        "score_function": "dot",
    }


def test_oracle_queries_are_one_row_per_judged_pair():
    from beir_peft.methods.gpl import oracle_queries

    rows = oracle_queries({"2": {"c": 1}, "1": {"b": 1, "a": 1, "n": 0}}, {"1": "q one", "2": "q two"})
    assert rows == [
        {"_id": "1:a", "text": "q one", "doc_id": "a"},
        {"_id": "1:b", "text": "q one", "doc_id": "b"},
        {"_id": "2:c", "text": "q two", "doc_id": "c"},
    ]


def test_an_injected_labeler_makes_the_labels_and_is_recorded(tiny, tmp_path):
    """The oracle replaces the cross-encoder (never loaded); the folder says an oracle was used."""
    from beir_peft.methods.gpl import OracleLabeler, oracle_queries
    from beir_peft.methods.gpl.pipeline import CONFIG_FILE

    data = load_dataset("demo", split="test")
    queries_file = tmp_path / "queries.jsonl"
    queries_file.write_text("".join(json.dumps(r) + "\n" for r in oracle_queries(data.qrels, data.queries)))
    oracle = OracleLabeler(data.qrels, data.queries, source="demo test")
    config = tiny_config(tiny, cross_encoder="nowhere/none", miners=["bm25"], steps=3)
    out = run_gpl(data.corpus, tmp_path / "run", config, queries_file=queries_file, labeler=oracle,
                  show_progress_bar=False)  # fmt: skip
    rows = [line.split("\t") for line in (out / TRAINING_FILE).read_text().splitlines()[1:]]
    texts = {
        json.loads(line)["_id"]: json.loads(line)["text"] for line in queries_file.read_text().splitlines()
    }
    for qid, pos, neg, margin in rows:
        assert float(margin) == oracle.score(texts[qid], pos) - oracle.score(texts[qid], neg)
    assert {float(r[3]) for r in rows} <= {0.0, 10.0}  # the positive is always judged relevant
    assert json.loads((out / CONFIG_FILE).read_text())["pseudo_labeler"] == oracle.describe()
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["gpl"]["pseudo_labeler"]["kind"] == "oracle"
    assert "oracle" in training["pseudo_labeler"] and "not a real GPL teacher" in training["pseudo_labeler"]
    assert "oracle" in (out / "README.md").read_text()
    # labels made by another teacher are not reused
    anti = OracleLabeler(data.qrels, data.queries, inverted=True, source="demo test")
    with pytest.raises(ConfigError, match="pseudo_labeler"):
        run_gpl(data.corpus, tmp_path / "run", config, queries_file=queries_file, labeler=anti,
                show_progress_bar=False)  # fmt: skip
    with pytest.raises(ConfigError, match="labeler must have margins"):
        run_gpl(data.corpus, tmp_path / "r2", config, queries_file=queries_file, labeler=object())


def test_the_default_labeler_is_recorded_as_the_cross_encoder(tiny, corpus, tmp_path):
    out = run_gpl(corpus, tmp_path / "run", tiny_config(tiny, steps=2), show_progress_bar=False)
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["gpl"]["pseudo_labeler"] == {"kind": "cross-encoder", "model": tiny["ce"]}
    assert training["pseudo_labeler"] == f"cross-encoder {tiny['ce']}"


def test_dense_miners_can_be_truncated(tiny, corpus, monkeypatch):
    """``mining_max_seq_length``: a CPU budget mines with shorter inputs than the miner's own."""
    import beir_peft.models.loading as loading
    from beir_peft.methods.gpl.negatives import mine_negatives

    loaded, original = [], loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loaded.append(original(*a, **k)) or loaded[-1])
    positives = {"q1": list(corpus)[0]}
    found = mine_negatives([tiny["bert"], "bm25"], corpus, {"q1": "what causes rain"}, positives, depth=3,
                           max_seq_length=8, show_progress_bar=False)  # fmt: skip
    assert loaded[0].model.max_seq_length == 8
    assert len(found["q1"][tiny["bert"]]) == 3 and positives["q1"] not in found["q1"]["bm25"]
    assert GPLConfig(mining_max_seq_length=16).mining_max_seq_length == 16
