"""ART: the teacher's score by hand, the cache, the KL loss and its gradients, the index refresh, top-K
from the current query encoder, exact resume, the CLI, and a SciFact run with the real MiniLM.

The teacher is a tiny random T5 built here; students are a tiny random BERT (and MiniLM at the end).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny_models import build_tiny_bert, build_tiny_t5

import beir_peft
from beir_peft.cli import main
from beir_peft.data import load_corpus, load_dataset
from beir_peft.errors import ConfigError, DatasetError
from beir_peft.losses import ARTDistillKLLoss
from beir_peft.methods.art import (
    ARTConfig,
    QuestionReconstructionTeacher,
    TeacherCache,
    build_student,
    train_art,
)
from beir_peft.models.base import QUERY

pytestmark = pytest.mark.usefixtures("no_network_data")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("art_models")
    return {"t5": str(build_tiny_t5(root / "t5")), "bert": str(build_tiny_bert(root / "bert"))}


@pytest.fixture(scope="module")
def teacher(tiny):
    return QuestionReconstructionTeacher(tiny["t5"], device="cpu", batch_size=3, max_passage_length=48)


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo", split="train")


def config(tiny, **overrides) -> ARTConfig:
    settings = {"student": "ft", "backbone": tiny["bert"], "teacher": tiny["t5"], "top_k": 4, "refresh_every": 3,
                "batch_size": 4, "epochs": 10, "max_steps": 6, "learning_rate": 1e-3, "checkpoint_every": 2,
                "device": "cpu", "warmup_ratio": 0.0}  # fmt: skip
    return ARTConfig(**{**settings, **overrides})


# ------------------------------------------------------------------------------- the teacher
def test_teacher_score_is_the_mean_token_log_probability(teacher):
    question, passage = "what do cats eat", "Cats are carnivores and eat meat."
    score = teacher.score([question, "another one"], [passage, "some other passage"])[0]
    batch = teacher.encode_pairs([question], [passage])
    labels = batch["labels"][0]
    labels = labels[labels != -100]
    model = teacher.model
    start = model.config.decoder_start_token_id
    total = 0.0
    with torch.no_grad():  # one token at a time, from the decoder start token
        for t in range(len(labels)):
            decoder_input = torch.tensor([[start, *labels[:t].tolist()]])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=decoder_input).logits[0, -1]  # fmt: skip
            total += torch.log_softmax(logits.float(), dim=-1)[labels[t]].item()
    assert score == pytest.approx(total / len(labels), abs=1e-4)
    # the prompts are ART's
    source = teacher.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert source.startswith("passage :") and "please write a question based on this passage" in source
    assert teacher.tokenizer.decode(labels, skip_special_tokens=True).startswith("question :")


def test_cache_scores_each_pair_once(teacher, demo):
    cache = TeacherCache(teacher, demo.queries, demo.corpus)
    qids, docs = list(demo.queries)[:2], list(demo.corpus)[:3]
    first = cache.get(qids, [docs, docs])
    assert first.shape == (2, 3) and cache.scored_pairs == 6
    again = cache.get(qids[::-1], [docs[::-1], docs])
    assert cache.scored_pairs == 6 and again[0].tolist() == first[1].tolist()[::-1]
    restored = TeacherCache(teacher, demo.queries, demo.corpus)
    restored.load_state(cache.state())
    assert restored.get(qids, [docs, docs]).tolist() == first.tolist() and restored.scored_pairs == 0


def test_teacher_load_error():
    with pytest.raises(ConfigError, match="cannot load the teacher"):
        QuestionReconstructionTeacher("/no/such/teacher")


# ------------------------------------------------------------------------------- the loss
def test_kl_loss_by_hand_and_gradients_reach_both_encoders(tiny):
    student = build_student(config(tiny))
    questions, passages = ["q one", "q two"], ["p a", "p b", "p c", "p d", "p e", "p f"]
    teacher_scores = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, -1.5]])
    loss_fn = ARTDistillKLLoss(student.module, hidden_size=student.embedding_dim)
    loss = loss_fn([student.tokenize(questions), student.tokenize(passages)], teacher_scores)
    with torch.no_grad():
        student.module.eval()
        q = student.module(student.tokenize(questions), "query")
        p = student.module(student.tokenize(passages), "passage").view(2, 3, -1)
        student.module.train()
    s = torch.einsum("bd,bkd->bk", q, p) / student.embedding_dim**0.5
    t = torch.softmax(teacher_scores, dim=1)
    expected = (t * (t.log() - torch.log_softmax(s, dim=1))).sum(1).mean()
    student.module.eval()
    loss = loss_fn([student.tokenize(questions), student.tokenize(passages)], teacher_scores)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()
    grads = {name.split(".")[0]: p.grad for name, p in student.module.named_parameters() if p.requires_grad}
    assert grads["backbone"] is not None and grads["passage_backbone"] is not None
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for name, p in student.module.named_parameters()
        if p.requires_grad and name.endswith("embeddings.word_embeddings.weight")
    )


# ------------------------------------------------------------------------------- training
def test_index_refresh_interval_and_top_k_from_the_current_query_encoder(tiny, teacher, demo, tmp_path):
    cfg = config(tiny, max_steps=7, checkpoint_every=0)
    student = build_student(cfg)
    states, seen = [copy.deepcopy(student.trainable_state_dict())], []

    def record(info):
        seen.append(info)
        states.append(copy.deepcopy(student.trainable_state_dict()))

    train_art(demo.queries, demo.corpus, tmp_path / "run", cfg, teacher=teacher, retriever=student,
              show_progress_bar=False, on_step=record)  # fmt: skip
    assert [info["index_step"] for info in seen] == [0, 0, 0, 3, 3, 3, 6]  # rebuilt at 0, 3, 6
    probe = build_student(cfg)
    doc_ids = list(demo.corpus)
    for info in seen:
        step = info["step"]
        probe.load_trainable_state_dict(states[info["index_step"]])  # the encoders the index was built with
        index = probe.encode_corpus([demo.corpus[d] for d in doc_ids], convert_to_tensor=True)
        probe.load_trainable_state_dict(states[step - 1])  # the query encoder just before this step
        q = probe.encode([demo.queries[q] for q in info["question_ids"]], side=QUERY, convert_to_tensor=True)
        expected = [[doc_ids[i] for i in row] for row in (q @ index.T).topk(4, dim=1).indices.tolist()]
        assert info["passage_ids"] == expected
    assert any(not torch.equal(states[0][k], states[-1][k]) for k in states[0])  # the encoders did train


def test_resume_continues_exactly_from_the_checkpoint(tiny, teacher, demo, tmp_path):
    cfg = config(tiny, max_steps=6, checkpoint_every=2)
    whole = train_art(
        demo.queries, demo.corpus, tmp_path / "whole", cfg, teacher=teacher, show_progress_bar=False
    )

    def dies_at_step_3(info):
        if info["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_art(demo.queries, demo.corpus, tmp_path / "cut", cfg, teacher=teacher, show_progress_bar=False,
                  on_step=dies_at_step_3)  # fmt: skip
    with pytest.raises(ConfigError, match="cannot resume with different settings .*top_k: 4 -> 3"):
        train_art(demo.queries, demo.corpus, tmp_path / "cut", config(tiny, top_k=3), teacher=teacher,
                  show_progress_bar=False)  # fmt: skip
    counting = TeacherCountingWrapper(teacher)
    cut = train_art(
        demo.queries, demo.corpus, tmp_path / "cut", cfg, teacher=counting, show_progress_bar=False
    )
    a, b = beir_peft.load(whole), beir_peft.load(cut)
    for name, tensor in a.trainable_state_dict().items():
        assert torch.equal(tensor, b.trainable_state_dict()[name]), name
    record = json.loads((cut / "config.json").read_text())["training"]
    assert record["steps"] == 6 and record["method"] == "art"
    assert not (cut / "checkpoints").exists()
    # the pairs scored before the checkpoint came from the saved cache
    assert counting.pairs < record["teacher_pairs_scored"]


def test_a_finished_run_is_returned_only_for_its_own_settings(tiny, teacher, demo, tmp_path):
    cfg = config(tiny, max_steps=2, checkpoint_every=0)
    out = train_art(
        demo.queries, demo.corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False
    )
    before = (out / "config.json").read_bytes()
    assert train_art(demo.queries, demo.corpus, out, cfg, teacher=teacher, show_progress_bar=False) == out
    with pytest.raises(
        ConfigError, match=r"config.json: cannot resume with different settings \(top_k: 4 -> 3\)"
    ):
        train_art(demo.queries, demo.corpus, out, config(tiny, max_steps=2, checkpoint_every=0, top_k=3),
                  teacher=teacher, show_progress_bar=False)  # fmt: skip
    fewer = dict(list(demo.queries.items())[:5])
    with pytest.raises(ConfigError, match=rf"questions: {len(demo.queries)} -> 5"):
        train_art(fewer, demo.corpus, out, cfg, teacher=teacher, show_progress_bar=False)
    assert (out / "config.json").read_bytes() == before


def test_epoch_seconds_cover_every_segment_of_a_resumed_run(tiny, teacher, demo, tmp_path, monkeypatch):
    # on the loop's clock, the first run spends 1000 s before its checkpoint at step 1 and is killed
    # in step 2; the resumed run takes no time on that clock
    import types

    import beir_peft.methods.art.training as art_training

    clock = [0.0]
    monkeypatch.setattr(art_training, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    cfg = config(tiny, epochs=1, max_steps=None, checkpoint_every=1)  # 3 steps in its one epoch

    def slow_then_killed(info):
        if info["step"] == 1:
            clock[0] += 1000.0
        if info["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_art(demo.queries, demo.corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False,
                  on_step=slow_then_killed)  # fmt: skip
    out = train_art(
        demo.queries, demo.corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False
    )
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["training"]["epoch_seconds"] == [
        1000.0
    ]


class TeacherCountingWrapper:
    def __init__(self, teacher):
        self.teacher, self.pairs = teacher, 0

    def score(self, questions, passages):
        self.pairs += len(questions)
        return self.teacher.score(questions, passages)


def test_students_and_bad_input(tiny, teacher, demo, tmp_path):
    for student in ("pt2-dpr", "lora"):
        out = train_art(demo.queries, demo.corpus, tmp_path / student, config(tiny, student=student, max_steps=2),
                        teacher=teacher, show_progress_bar=False)  # fmt: skip
        assert beir_peft.load(out).method == student
    with pytest.raises(ConfigError, match="ART students"):
        ARTConfig(student="bitfit")
    with pytest.raises(ConfigError, match="top_k"):
        ARTConfig(top_k=1)
    with pytest.raises(DatasetError, match="at least top_k"):
        train_art(
            demo.queries, dict(list(demo.corpus.items())[:2]), tmp_path / "x", config(tiny), teacher=teacher
        )


def test_cli_adapt_art(tiny, tmp_path, capsys):
    args = ["adapt", "art", "-d", "demo", "--questions", "train", "-o", str(tmp_path / "run"), "--backbone",
            tiny["bert"], "--teacher", tiny["t5"], "--top-k", "3", "--max-steps", "2", "--batch-size", "4",
            "--device", "cpu", "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "qrels unused" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "run"), "-q", "--k-values", "10"]) == 0
    capsys.readouterr()
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"_id": "1"}\n')
    assert main([*args[:5], str(bad), "-o", str(tmp_path / "run2"), *args[8:]]) == 2
    err = capsys.readouterr().err
    assert "q.jsonl line 1" in err and "Traceback" not in err
    assert main([*args[:5], str(tmp_path / "typo.jsonl"), "-o", str(tmp_path / "run3"), *args[8:]]) == 2
    err = capsys.readouterr().err
    assert "no such questions file" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- real MiniLM
def test_scifact_train_questions_with_real_minilm(tiny, teacher, shared_datasets, tmp_path):
    """MiniLM initialises both encoders; SciFact train questions (qrels unused), 150 passages."""
    from beir_peft.encoders.backbone import DEFAULT_BACKBONE

    data = load_dataset(shared_datasets / "scifact", split="train")
    questions = dict(list(data.queries.items())[:16])
    corpus = dict(list(load_corpus(shared_datasets / "scifact").items())[:150])
    cfg = config(tiny, backbone=DEFAULT_BACKBONE, max_steps=2, top_k=4, batch_size=8, learning_rate=2e-5)
    out = train_art(questions, corpus, tmp_path / "run", cfg, teacher=teacher, dataset_name="scifact",
                    show_progress_bar=False)  # fmt: skip
    model = beir_peft.load(out)
    assert model.config.separate_encoders and model.config.backbone == DEFAULT_BACKBONE
    q = model.encode_queries(["what causes inflammation"])
    p = model.encode_corpus([{"title": "", "text": "inflammation is caused by"}])
    assert q.shape == p.shape == (1, 384)
