"""DPTDR's intermediate pre-training: label-free pairs cut from the corpus (``train --pairs``), and
supervised training that starts from the pre-trained folder (``train --init-from``)."""

from __future__ import annotations

import json

import pytest
from test_cli import TRAIN, assert_user_error, run

from beir_peft.data import BeirDataset, load_dataset
from beir_peft.errors import ConfigError, DatasetError
from beir_peft.methods.corpus_pairs import ICT_KEEP_SENTENCE, corpus_rows, sentences
from beir_peft.models.loading import load
from beir_peft.training.config import TrainingConfig

pytestmark = pytest.mark.usefixtures("no_network_data")


def test_sentences_split_after_end_marks_before_a_new_sentence():
    text = "Aspirin lowers risk by 10.5 percent. It was tested (n=40)! Was it? [1] Yes e.g. in mice."
    assert sentences(text) == ["Aspirin lowers risk by 10.5 percent.", "It was tested (n=40)!", "Was it?",
                               "[1] Yes e.g. in mice."]  # fmt: skip


def test_title_pairs_are_title_to_text_and_skip_untitled_documents():
    demo = load_dataset("demo", split="train")
    rows = corpus_rows(demo, "title", seed=0)
    titled = [d for d in demo.corpus.values() if (d.get("title") or "").strip() and d["text"].strip()]
    assert len(rows) == len(titled) > 0
    assert {(row["query"], row["positive"]) for row in rows} == {
        (d["title"].strip(), d["text"].strip()) for d in titled
    }


def test_ict_takes_one_sentence_and_mostly_removes_it_from_its_document():
    text = " ".join(f"Sentence number {i} says something." for i in range(8))
    corpus = {f"d{i}": {"title": f"T{i}", "text": text} for i in range(400)}
    corpus["short"] = {"title": "", "text": "Only one sentence here."}
    dataset = BeirDataset(name="synthetic", path=None, split="train", corpus=corpus, queries={}, qrels={})
    rows = corpus_rows(dataset, "ict", seed=1)
    assert len(rows) == 400  # the one-sentence document is skipped
    kept = 0
    for row in rows:
        assert row["query"] in sentences(text) and row["positive"].startswith("T")
        kept += row["query"] in row["positive"]
    assert abs(kept / len(rows) - ICT_KEEP_SENTENCE) < 0.05
    assert corpus_rows(dataset, "ict", seed=1) == rows  # seeded


def test_no_usable_document_is_a_clear_error():
    dataset = BeirDataset(name="untitled", path=None, split="train", corpus={"a": {"title": "", "text": "x."}},
                          queries={}, qrels={})  # fmt: skip
    with pytest.raises(DatasetError, match="untitled: no document with a title and a text"):
        corpus_rows(dataset, "title", seed=0)
    with pytest.raises(ConfigError, match="in-batch negatives only"):
        TrainingConfig(pair_source="ict", hard_negatives=1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus_pairs") / "ict"
    assert run_quietly(*TRAIN, "--dataset", "demo", "--pairs", "ict", "--output", str(folder)) == 0
    return folder


def run_quietly(*argv: str) -> int:
    from beir_peft.cli import main

    return main(list(argv))


def test_pretraining_on_corpus_pairs_records_its_source(pretrained):
    record = json.loads((pretrained / "config.json").read_text())["training"]
    assert record["pair_source"] == "ict" and record["pairs"] > 11  # one per document, not the 11 qrels pairs
    assert record["init_from"] is None


def test_init_from_starts_from_the_saved_state_and_records_it(pretrained, tmp_path, capsys):
    start = load(pretrained)
    output = tmp_path / "sup"
    status, out, err = run(capsys, *TRAIN, "--dataset", "demo", "--init-from", str(pretrained), "--lr", "1e-12",
                           "--output", str(output))  # fmt: skip
    assert status == 0, err
    assert f"from {pretrained}" in err
    record = json.loads((output / "config.json").read_text())["training"]
    assert record["init_from"] == {"path": str(pretrained.resolve()), "fingerprint": start.fingerprint()}
    trained = load(output)
    for name, tensor in start.trainable_state_dict().items():  # lr 1e-12: still the pre-trained prompts
        assert (trained.trainable_state_dict()[name] - tensor).abs().max() < 1e-6, name
    # a resumed run must start from the same folder
    status, out, err = run(
        capsys, *TRAIN, "--dataset", "demo", "--lr", "1e-12", "--output", str(output), "--resume"
    )
    assert_user_error(status, out, err, str(output), "init_from")


def test_init_from_refuses_another_method_and_model_options(pretrained, tmp_path, capsys):
    lora = ("train", "lora", *TRAIN[2:])
    status, out, err = run(
        capsys, *lora, "--dataset", "demo", "--init-from", str(pretrained), "-o", str(tmp_path / "a")
    )
    assert_user_error(status, out, err, "holds a pt2-dpr model, not lora")
    status, out, err = run(capsys, *TRAIN, "--dataset", "demo", "--init-from", str(pretrained), "--set", "gate=false",
                           "-o", str(tmp_path / "b"))  # fmt: skip
    assert_user_error(status, out, err, "--init-from takes the model as saved", "--set")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
