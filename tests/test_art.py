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
from beir_peft.training.adaptation_check import summary

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

    import beir_peft.training.loop as art_training

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
    args = ["adapt", "art", "-d", "demo", "--questions", "test", "-o", str(tmp_path / "run"), "--backbone",
            tiny["bert"], "--teacher", tiny["t5"], "--top-k", "3", "--max-steps", "2", "--batch-size", "4",
            "--device", "cpu", "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "qrels unused" in err
    # the 20 test questions: 2 held out, and the check's line said once (a warning or not)
    check = json.loads((tmp_path / "run" / "config.json").read_text())["training"]["adaptation_check"]
    assert check["held_out_queries"] == 2 and err.count(summary(check)) == 1
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
    # MiniLM's unit vectors at temperature 0.05: the student's softmax over the top-K is far from uniform
    # (at sqrt(384) its logits spread by about 0.01 and its top probability is 1/K to three decimals)
    record = json.loads((out / "config.json").read_text())["training"]
    assert record["student_temperature"] == 0.05
    assert record["initial_logit_spread"]["spread"] > 0.5
    assert record["initial_logit_spread"]["top_probability"] > 1.5 / cfg.top_k


# ------------------------------------------------------------------------------- the student's scale
def test_student_temperature_follows_the_embeddings_geometry(tmp_path, tiny, teacher, demo):
    """Unit vectors (a backbone ending in Normalize, as all-MiniLM-L6-v2 does) are divided by 0.05, raw
    vectors by sqrt(hidden) [code]; the folder records the pipeline and the temperature."""
    from beir_peft.encoders.backbone import normalizes
    from beir_peft.methods.art.training import COSINE_TEMPERATURE, student_temperature

    normalized = str(build_tiny_bert(tmp_path / "normalized", normalize=True))
    cfg = ARTConfig(student="ft", backbone=normalized, top_k=4, batch_size=4, max_steps=1, checkpoint_every=0,
                    device="cpu")  # fmt: skip
    student = build_student(cfg)
    assert normalizes(student.model) and student.score_function == "dot"
    assert student_temperature(cfg, student) == COSINE_TEMPERATURE == 0.05
    out = train_art(
        demo.queries, demo.corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False
    )
    saved = json.loads((out / "config.json").read_text())
    assert saved["score_function"] == "dot" and saved["training"]["student_temperature"] == 0.05
    assert normalizes(beir_peft.load(out).model)
    raw = ARTConfig(backbone=normalized, normalize=False)
    raw_student = build_student(raw)
    assert not normalizes(raw_student.model) and student_temperature(raw, raw_student) == pytest.approx(
        32**0.5
    )
    plain = config(tiny)  # the tiny BERT has no Normalize
    assert student_temperature(plain, build_student(plain)) == pytest.approx(32**0.5)
    assert student_temperature(ARTConfig(student_temperature=2.0), student) == 2.0


def test_student_temperature_divides_the_scores(tiny):
    student = build_student(config(tiny))
    student.module.eval()
    questions, passages = ["q one", "q two"], ["p a", "p b", "p c", "p d"]
    teacher_scores = torch.tensor([[0.0, -10.0], [-10.0, 0.0]])
    features = [student.tokenize(questions), student.tokenize(passages)]
    with torch.no_grad():
        q = student.module(features[0], "query")
        p = student.module(features[1], "passage").view(2, 2, -1)
    t = torch.softmax(teacher_scores, dim=1)
    for temperature in (None, 1.0, 0.5):
        loss = ARTDistillKLLoss(student.module, hidden_size=student.embedding_dim, temperature=temperature)
        s = torch.einsum("bd,bkd->bk", q, p) / (temperature or student.embedding_dim**0.5)
        expected = (t * (t.log() - torch.log_softmax(s, dim=1))).sum(1).mean()
        assert loss(features, teacher_scores).item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(ConfigError, match="temperature"):
        ARTConfig(student_temperature=0)


# ------------------------------------------------------------------------------- injectable teachers
def oracle_data():
    # q3 has q1's text, d4 has d3's
    queries = {"q1": "what do cats eat", "q2": "why is the sky blue", "q3": "what do cats eat"}
    corpus = {"d1": {"title": "Cats", "text": "Cats eat meat."}, "d2": {"title": "Sky", "text": "Rayleigh."},
              "d3": {"title": "Dogs", "text": "Dogs bark."}, "d4": {"title": "Dogs", "text": "Dogs bark."}}  # fmt: skip
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 0}, "q3": {"d4": 1}}
    return queries, corpus, qrels


def test_oracle_teacher_scores_judged_pairs_from_texts():
    from beir_peft.methods.art import QrelsOracleTeacher, RelevanceTeacher
    from beir_peft.models.base import passage_text

    queries, corpus, qrels = oracle_data()
    oracle = QrelsOracleTeacher(queries, corpus, qrels, source="toy/train")
    anti = QrelsOracleTeacher(queries, corpus, qrels, inverted=True, source="toy/train")
    assert isinstance(oracle, RelevanceTeacher)
    text = {d: passage_text(doc) for d, doc in corpus.items()}
    questions = [queries["q1"]] * 3 + [queries["q2"]] * 3
    passages = [text["d1"], text["d2"], text["d3"], text["d1"], text["d2"], text["d3"]]
    # a text stands for all its ids (q3 -> d4 makes "cats" -> "dogs" relevant); grade 0 is not relevant
    assert oracle.score(questions, passages) == [0.0, -10.0, 0.0, -10.0, 0.0, -10.0]
    assert anti.score(questions, passages) == [-10.0, 0.0, -10.0, 0.0, -10.0, 0.0]
    assert torch.softmax(torch.tensor(oracle.score(questions[3:], passages[3:])), 0)[1] > 0.9999
    assert oracle.describe()["kind"] == "oracle" and anti.describe()["kind"] == "anti-oracle"
    assert oracle.describe()["name"] == "oracle:toy/train" and oracle.describe()["relevant_pairs"] == 3
    with pytest.raises(ConfigError, match="no question 'unknown"):
        oracle.score(["unknown question"], [text["d1"]])
    with pytest.raises(ConfigError, match="no passage"):
        oracle.score([queries["q1"]], ["a passage it never saw"])
    with pytest.raises(ConfigError, match="must exceed"):
        QrelsOracleTeacher(queries, corpus, qrels, relevant_score=-10, irrelevant_score=0)
    with pytest.raises(ConfigError, match="no relevant pair"):
        QrelsOracleTeacher(queries, corpus, {"q9": {"d1": 1}})


def test_the_saved_record_names_the_teacher_that_trained_it(tiny, teacher, demo, tmp_path):
    from beir_peft.methods.art import QrelsOracleTeacher

    cfg = config(tiny, max_steps=2, checkpoint_every=0)
    runs = {
        "t5": teacher,
        "oracle": QrelsOracleTeacher.from_dataset(demo),
        "anti": QrelsOracleTeacher.from_dataset(demo, inverted=True),
        "custom": TeacherCountingWrapper(teacher),
    }
    records = {}
    for name, chosen in runs.items():
        out = train_art(
            demo.queries, demo.corpus, tmp_path / name, cfg, teacher=chosen, show_progress_bar=False
        )
        records[name] = json.loads((out / "config.json").read_text())["training"]
        card = (out / "README.md").read_text()
        assert f"teacher_kind: {records[name]['teacher_kind']}" in card
    assert records["t5"]["teacher"] == tiny["t5"] and records["t5"]["teacher_kind"] == "question-likelihood"
    assert records["oracle"]["teacher"] == "oracle:demo/train"
    assert records["oracle"]["teacher_kind"] == "oracle"
    assert records["anti"]["teacher_kind"] == "anti-oracle" and records["anti"]["teacher_details"]["inverted"]
    assert records["custom"]["teacher_kind"] == "custom"
    assert "TeacherCountingWrapper" in records["custom"]["teacher"]
    spread = records["oracle"]["initial_logit_spread"]
    assert spread["spread"] >= 0 and 1 / cfg.top_k <= spread["top_probability"] <= 1
    assert records["oracle"]["student_temperature"] == pytest.approx(32**0.5)  # raw vectors: sqrt(hidden)


class TiedTeacher:
    """Scores every pair alike: no question tells its passages apart."""

    def score(self, questions, passages):
        return [0.0] * len(questions)

    def describe(self):
        return {"kind": "tied", "name": "tied"}


def test_questions_whose_teacher_scores_all_tie_are_left_out(tiny, teacher, demo, tmp_path):
    """KL toward a uniform teacher only flattens the student: a tied question teaches nothing."""
    student = build_student(config(tiny))
    before = {k: v.clone() for k, v in student.trainable_state_dict().items()}
    seen = []
    out = train_art(demo.queries, demo.corpus, tmp_path / "tied", config(tiny, checkpoint_every=0),
                    teacher=TiedTeacher(), retriever=student, show_progress_bar=False,
                    on_step=lambda info: seen.extend(info["question_ids"]))  # fmt: skip
    after = beir_peft.load(out).trainable_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    record = json.loads((out / "config.json").read_text())["training"]
    assert record["uninformative_questions"] == len(seen) > 0 and record["teacher"] == "tied"
    # a real teacher's rows all count, and the student moves
    out = train_art(demo.queries, demo.corpus, tmp_path / "lm", config(tiny, checkpoint_every=0),
                    teacher=teacher, show_progress_bar=False)  # fmt: skip
    assert json.loads((out / "config.json").read_text())["training"]["uninformative_questions"] == 0


# ------------------------------------------------------------------------------- the adaptation check
@pytest.fixture(scope="module")
def demo_all():
    """The demo's train and test questions together: 30, of which a tenth (3) are held out."""
    train, test = load_dataset("demo", split="train"), load_dataset("demo", split="test")
    return {**train.queries, **test.queries}, train.corpus, {**train.qrels, **test.qrels}


def test_held_out_questions_are_not_trained_on_and_the_check_is_recorded(tiny, teacher, demo_all, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    from beir_peft.methods.art import held_out as art_held_out
    from beir_peft.training.adaptation_check import held_out_sample, recorded_check

    queries, corpus, _ = demo_all
    cfg = config(tiny, max_steps=4, checkpoint_every=0)
    seen, lines = [], []
    out = train_art(queries, corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False,
                    on_step=lambda info: seen.extend(info["question_ids"]), echo=lines.append)  # fmt: skip
    held = held_out_sample(list(queries), cfg.held_out_questions, cfg.seed)
    assert len(held) == 3 and not set(held) & set(seen)
    record = json.loads((out / "config.json").read_text())["training"]
    check = record["adaptation_check"]
    assert record["questions"] == 27 and record["held_out_questions"] == 200
    # the tiny T5 never ties, so every held-out question has the teacher's choice
    assert check["held_out_queries"] == 3 and check["start_model"] == tiny["bert"]
    assert check["signal"].startswith("held-out questions") and check["candidate_passages"] >= cfg.top_k
    assert lines == [summary(check)] and summary(check) in (out / "README.md").read_text()

    def unused(*args, **kwargs):
        raise AssertionError("a finished run's recorded check is not scored again")

    monkeypatch.setattr(art_held_out, "teacher_choice_signal", unused)
    again = []
    assert (
        train_art(queries, corpus, out, cfg, teacher=teacher, show_progress_bar=False, echo=again.append)
        == out
    )
    assert again == lines and recorded_check(out) == check

    none = train_art(queries, corpus, tmp_path / "none", config(tiny, max_steps=1, checkpoint_every=0,
                     held_out_questions=0), teacher=teacher, show_progress_bar=False)  # fmt: skip
    record = json.loads((none / "config.json").read_text())["training"]
    assert "adaptation_check" not in record and record["questions"] == 30
    with pytest.raises(ConfigError, match="held_out_questions"):
        ARTConfig(held_out_questions=-1)


def test_a_folder_from_before_the_check_is_still_finished(tiny, teacher, demo_all, tmp_path):
    """A record without ``held_out_questions`` was trained on every question."""
    queries, corpus, _ = demo_all
    cfg = config(tiny, max_steps=1, checkpoint_every=0, held_out_questions=0)
    out = train_art(queries, corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False)
    saved = json.loads((out / "config.json").read_text())
    del saved["training"]["held_out_questions"]
    (out / "config.json").write_text(json.dumps(saved))
    before = (out / "weights.safetensors").read_bytes()
    assert train_art(queries, corpus, out, cfg, teacher=teacher, show_progress_bar=False) == out
    assert (out / "weights.safetensors").read_bytes() == before


def test_a_learning_rate_that_wrecks_the_backbone_warns(demo_all, tmp_path, caplog):
    """The real MiniLM at lr 1e-2 for 3 steps (the paper's is 2e-5): on the held-out questions it
    finds the oracle teacher's choice far less often than before, and the run says so."""
    from beir_peft.methods.art import QrelsOracleTeacher
    from beir_peft.training.adaptation_check import recorded_check, warning

    queries, corpus, qrels = demo_all
    teacher = QrelsOracleTeacher(queries, corpus, qrels, source="demo/train+test")
    cfg = ARTConfig(student="ft", max_seq_length=64, top_k=4, batch_size=8, max_steps=3, learning_rate=1e-2,
                    warmup_ratio=0.0, refresh_every=10**6, checkpoint_every=0, device="cpu")  # fmt: skip
    with caplog.at_level("WARNING", logger="beir_peft"):
        out = train_art(queries, corpus, tmp_path / "run", cfg, teacher=teacher, show_progress_bar=False)
    check = recorded_check(out)
    assert not check["better"] and check["adapted"] < check["start"] - 0.2, check
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [warning(check)]
