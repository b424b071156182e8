"""PT2-ColBERT and exact MaxSim search on a tiny random BERT (2 layers, 32 wide, 128 positions)."""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from beir.retrieval.evaluation import EvaluateRetrieval
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import PT2ColBERT
from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.models.base import PASSAGE, QUERY
from beir_peft.models.colbert import maxsim
from beir_peft.search.maxsim import META_FILE, VECTORS_FILE, MaxSimSearch

QUERIES = ["what causes the seasons?", "tilt", ""]
DOCS = ["The tilt of the Earth's axis causes the seasons.", "A short one!", "no punctuation here"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("other"), seed=1))


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return PT2ColBERT(tiny, gate=False, init="random", prefix_length=8)


def _perturb(retriever, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in retriever.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


# ----------------------------------------------------------------------------- MaxSim
def test_maxsim_matches_a_hand_computation():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])  # 1 query, 3 tokens
    q_mask = torch.tensor([[True, True, False]])  # the third token does not count
    d = torch.tensor(
        [
            [[0.0, 1.0], [0.8, 0.6], [1.0, 0.0]],  # third token masked: the max must skip it
            [[-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]],  # every similarity <= 0
        ]
    )
    d_mask = torch.tensor([[True, True, False], [True, True, False]])
    # doc 0: token q0 -> max(0, 0.8) = 0.8; q1 -> max(1, 0.6) = 1.0      => 1.8
    # doc 1: q0 -> max(-1, 0) = 0; q1 -> max(0, -1) = 0                    => 0.0
    expected = torch.tensor([[1.8, 0.0]])
    torch.testing.assert_close(maxsim(q, q_mask, d, d_mask), expected)
    # without masks every token counts: doc 0 q0 -> 1.0, q1 -> 1.0, q2 -> max(0.8, 0.96, 0.6) = 0.96
    # doc 1: q0 -> 0 (the zero vector), q1 -> 0, q2 -> 0
    torch.testing.assert_close(maxsim(q, None, d, None), torch.tensor([[2.96, 0.0]]))


def test_model_score_is_maxsim_of_cosines(model):
    q, q_mask = model.encode_query_tokens(QUERIES[:2])
    d, d_mask = model.encode_doc_tokens(DOCS)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(q.shape[:2]))
    torch.testing.assert_close(d.norm(dim=-1)[d_mask], torch.ones(int(d_mask.sum())))
    scores = model.score(q, q_mask, d, d_mask)
    assert scores.shape == (2, 3)
    for a in range(2):
        for b in range(3):
            kept = d[b][d_mask[b]]
            by_hand = sum(float((kept @ q[a, i]).max()) for i in range(q.shape[1]) if q_mask[a, i])
            assert scores[a, b].item() == pytest.approx(by_hand, abs=1e-4)


# ----------------------------------------------------------------------------- tokenisation
def test_query_augmentation_pads_with_mask_to_query_maxlen(model):
    tok = model.tokenizer
    features = model.tokenize_queries(["what causes the seasons?"])
    ids = features["input_ids"][0].tolist()
    assert len(ids) == model.query_maxlen == 32
    body = tok("what causes the seasons?", add_special_tokens=False)["input_ids"]
    assert ids[: len(body) + 3] == [
        tok.cls_token_id,
        tok.convert_tokens_to_ids("[unused0]"),
        *body,
        tok.sep_token_id,
    ]
    assert ids[len(body) + 3 :] == [tok.mask_token_id] * (32 - len(body) - 3)
    # ColBERT v1 / PT-Retrieval: the [MASK] padding is not attended to ...
    assert features["attention_mask"][0].tolist() == [1] * (len(body) + 3) + [0] * (32 - len(body) - 3)
    # ... but all query_maxlen vectors count in MaxSim
    vectors, mask = model.encode_query_tokens(QUERIES)
    assert vectors.shape == (3, 32, 128) and mask.all()

    long = model.tokenize_queries([" ".join(["word"] * 100)])["input_ids"][0]
    assert len(long) == 32 and long[-1].item() == tok.sep_token_id


def test_query_options(tiny):
    attend = PT2ColBERT(tiny, attend_to_mask_tokens=True, init="random", prefix_length=4)
    assert attend.tokenize_queries(["a query"])["attention_mask"].all()
    plain = PT2ColBERT(tiny, query_augmentation=False, init="random", prefix_length=4)
    features = plain.tokenize_queries(["a query"])
    assert features["input_ids"][0, 5:].eq(plain.tokenizer.pad_token_id).all()
    _, mask = plain.encode_query_tokens(["a query"])
    assert mask[0].tolist() == [True] * 5 + [False] * 27  # [CLS] [Q] a query [SEP]


def test_punctuation_is_masked_out_of_documents(model, tiny):
    tok = model.tokenizer
    text = "Hello, world! It's (really) me."
    features = model.tokenize_docs([text])
    tokens = tok.convert_ids_to_tokens(features["input_ids"][0].tolist())
    assert tokens[:2] == ["[CLS]", "[unused1]"] and tokens[-1] == "[SEP]"
    kept = [t for t, m in zip(tokens, model.doc_mask(features)[0].tolist(), strict=True) if m]
    assert kept == ["[CLS]", "[unused1]", "hello", "world", "it", "s", "really", "me", "[SEP]"]
    vectors = model.encode_doc_token_lists([text, {"title": None, "text": "abc"}])
    assert [len(v) for v in vectors] == [9, 4]  # [CLS] [D] abc [SEP]

    keep_all = PT2ColBERT(tiny, mask_punctuation=False, init="random", prefix_length=4)
    assert len(keep_all.encode_doc_token_lists([text])[0]) == len(tokens)


def test_doc_maxlen_is_capped_at_the_position_embeddings(tiny):
    model = PT2ColBERT(tiny, init="random", prefix_length=4)  # tiny BERT: 128 positions
    assert model.config.doc_maxlen == 300 and model.doc_maxlen == 128
    long_doc = " ".join(["word"] * 400)
    assert model.tokenize_docs([long_doc])["input_ids"].shape == (1, 128)
    shifted = PT2ColBERT(tiny, init="random", prefix_length=8, shift_positions=True)
    assert shifted.doc_maxlen == 120
    assert shifted.encode_doc_tokens([long_doc])[0].shape == (1, 120, 128)
    with pytest.raises(ConfigError, match="query_maxlen"):
        PT2ColBERT(tiny, init="random", query_maxlen=200)


def test_missing_marker_tokens_fall_back_to_no_marker(tiny, caplog):
    with caplog.at_level(logging.WARNING):
        model = PT2ColBERT(tiny, init="random", prefix_length=4, query_marker="[Q]", doc_marker=None)
    assert "no '[Q]' token" in caplog.text
    tok = model.tokenizer
    ids = model.tokenize_queries(["tilt"])["input_ids"][0].tolist()
    assert ids[:3] == [tok.cls_token_id, tok.convert_tokens_to_ids("tilt"), tok.sep_token_id]
    assert model.tokenize_docs(["tilt"])["input_ids"][0].tolist() == ids[:3]


# ----------------------------------------------------------------------------- what trains
def test_pt2_colbert_trains_only_the_prefix_and_the_linear_layer(tiny):
    model = PT2ColBERT(tiny, prefix_length=8)
    names = {n for n, p in model.module.named_parameters() if p.requires_grad}
    assert names == {"prompt.key", "prompt.value", "prompt.gate", "linear.weight"}
    # layers x heads x length x head_dim x (key, value) + gates + Linear(32 -> 128)
    assert model.trainable_parameter_count() == 2 * 4 * 8 * 8 * 2 + 2 * 4 + 32 * 128
    model.module.train()
    q, q_mask = model.module(model.tokenize_queries(QUERIES[:2]), QUERY)
    d, d_mask = model.module(model.tokenize_docs(DOCS[:2]), PASSAGE)
    model.score(q, q_mask, d, d_mask).diagonal().sum().backward()
    with_grad = {
        n for n, p in model.module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert {"prompt.gate", "linear.weight"} <= with_grad <= names
    assert all(p.grad is None for n, p in model.module.named_parameters() if n not in names)


def test_colbert_ft_trains_the_backbone_and_the_linear_layer(tiny):
    model = PT2ColBERT(tiny, method="colbert-ft")
    assert model.module.prompt is None
    trainable = {n for n, p in model.module.named_parameters() if p.requires_grad}
    backbone = {f"backbone.{n}" for n, _ in model.encoder.named_parameters() if not n.startswith("pooler.")}
    assert trainable == backbone | {"linear.weight"}
    pooler = sum(p.numel() for n, p in model.encoder.named_parameters() if n.startswith("pooler."))
    assert model.trainable_parameter_count() == model.total_parameter_count() - pooler


def test_gated_prefix_starts_exactly_at_the_prefixless_model(tiny):
    ft = PT2ColBERT(tiny, method="colbert-ft")
    for gate, same in ((True, True), (False, False)):
        pt2 = PT2ColBERT(tiny, gate=gate)
        with torch.no_grad():
            pt2.module.linear.weight.copy_(ft.module.linear.weight)
        for encode in ("encode_query_tokens", "encode_doc_tokens"):
            texts = QUERIES if encode == "encode_query_tokens" else DOCS
            a, a_mask = getattr(pt2, encode)(texts)
            b, b_mask = getattr(ft, encode)(texts)
            assert torch.equal(a_mask, b_mask)
            assert torch.allclose(a, b, atol=1e-6) is same


def test_prefix_dropout_is_off_while_encoding(model):
    model.module.train()
    try:
        first, _ = model.encode_query_tokens(QUERIES)
        second, _ = model.encode_query_tokens(QUERIES)
        assert torch.equal(first, second)
        assert model.module.training and model.module.prompt.training  # restored afterwards
        q, _ = model.embed_queries(model.tokenize_queries(QUERIES))
        assert not torch.allclose(q.detach(), first)  # training forwards do use dropout
    finally:
        model.module.eval()


def test_fingerprint_follows_in_place_updates(tiny):
    model = PT2ColBERT(tiny, prefix_length=8, dim=16)
    before = model.fingerprint()
    assert model.fingerprint() == before  # cached, same value
    with torch.no_grad():
        model.trainable_parameters()[0].add_(1e-3)  # what an optimizer step does
    after = model.fingerprint()
    assert after != before
    model.load_trainable_state_dict({k: v.clone() for k, v in model.trainable_state_dict().items()})
    assert model.fingerprint() == after  # same values again, same hash


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("method", ["pt2-colbert", "colbert-ft"])
def test_save_load_round_trip_is_exact(tiny, tmp_path, method):
    model = PT2ColBERT(tiny, method=method, prefix_length=8, dim=16)
    _perturb(model)
    model.save(tmp_path / "m")
    loaded = beir_peft.load(tmp_path / "m")
    assert type(loaded) is PT2ColBERT and loaded.method == method
    assert loaded.config == model.config and loaded.fingerprint() == model.fingerprint()
    for encode, texts in (("encode_query_tokens", QUERIES), ("encode_doc_tokens", DOCS)):
        a, a_mask = getattr(model, encode)(texts)
        b, b_mask = getattr(loaded, encode)(texts)
        assert torch.equal(a, b) and torch.equal(a_mask, b_mask)
    saved = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert set(saved) == set(model.trainable_state_dict())
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["method"] == method and config["dim"] == 16
    assert config["trainable_parameters"] == model.trainable_parameter_count()
    assert "MaxSim over cosine" in (tmp_path / "m" / "README.md").read_text()


@pytest.fixture
def saved(tiny, tmp_path):
    model = PT2ColBERT(tiny, prefix_length=8)
    model.save(tmp_path / "m")
    return tmp_path / "m"


def test_strict_loading(saved):
    weights = load_file(str(saved / "weights.safetensors"))
    save_file(
        {**weights, "linear.weight": weights["linear.weight"][:64].contiguous()},
        str(saved / "weights.safetensors"),
    )
    with pytest.raises(ArtifactError, match="shape"):
        beir_peft.load(saved)
    save_file({k: v for k, v in weights.items() if k != "prompt.gate"}, str(saved / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="missing"):
        beir_peft.load(saved)
    save_file({**weights, "prompt.extra": torch.zeros(1)}, str(saved / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="unexpected"):
        beir_peft.load(saved)


def test_strict_loading_in_memory(model):
    state = dict(model.trainable_state_dict())
    with pytest.raises(ArtifactError, match="missing 1 tensor"):
        model.load_trainable_state_dict({k: v for k, v in state.items() if k != "linear.weight"})
    with pytest.raises(ArtifactError, match="unexpected"):
        model.load_trainable_state_dict(
            {**state, "backbone.embeddings.word_embeddings.weight": torch.zeros(1)}
        )


@pytest.mark.parametrize(
    ("change", "match"),
    [({"dim": 64}, "shape"), ({"prefix_length": 7}, "shape"), ({"dimension": 64}, "unknown field")],
)
def test_load_refuses_a_changed_config(saved, change, match):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ArtifactError, match=match):
        beir_peft.load(saved)


def test_load_refuses_another_backbone(saved, other_tiny):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "backbone": other_tiny}))
    with pytest.raises(ArtifactError, match="backbone"):
        beir_peft.load(saved)


def test_options_are_checked(tiny):
    with pytest.raises(ConfigError, match="unknown option"):
        PT2ColBERT(tiny, prefix_lenght=5)
    with pytest.raises(ConfigError, match="unknown method"):
        PT2ColBERT(tiny, method="colbert-lora")
    with pytest.raises(ConfigError, match="similarity"):
        PT2ColBERT(tiny, similarity="l2")


# ----------------------------------------------------------------------------- MaxSim search
WORDS = "earth axis tilt season sun orbit winter summer light heat cold moon star planet year day".split()


def _corpus():
    generator = torch.Generator().manual_seed(3)
    corpus = {}
    for i in range(20):
        length = 3 + int(torch.randint(0, 25, (1,), generator=generator))
        words = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (length,), generator=generator)]
        title = None if i % 4 == 0 else f"title {i}"
        corpus[f"d{i}"] = {"title": title, "text": ", ".join(words) + "."}
    corpus["d7"] = {"text": "no title key at all"}
    return corpus


QUERY_SET = {"q1": "why is summer warm", "q2": "moon orbit", "q3": "tilt of the axis", "d3": "sun light"}


def _brute_force(model, corpus, queries, k):
    """Every query against every document, from the model's own encoders and score (float16 documents)."""
    doc_ids = list(corpus)
    texts = [corpus[d] for d in doc_ids]
    d, d_mask = model.encode_doc_tokens([{"title": t.get("title") or "", "text": t["text"]} for t in texts])
    q, q_mask = model.encode_query_tokens(list(queries.values()))
    scores = model.score(q, q_mask, d.half().float(), d_mask)
    top = scores.topk(k, dim=1)
    return {
        qid: [
            (doc_ids[i], s) for s, i in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True)
        ]
        for row, qid in enumerate(queries)
    }


def _check(results, expected):
    assert set(results) == set(expected)
    for qid, hits in expected.items():
        assert list(results[qid]) == [doc for doc, _ in hits]
        for doc, score in hits:
            assert results[qid][doc] == pytest.approx(score, abs=1e-4)


def test_exact_search_equals_brute_force(model):
    corpus = _corpus()
    expected = _brute_force(model, corpus, QUERY_SET, k=5)
    # tiny chunks: several query batches and document chunks, several encoding chunks
    search = MaxSimSearch(
        model,
        batch_size=4,
        query_batch_size=3,
        corpus_chunk_size=6,
        max_scores_elements=3 * 32 * 40,
        show_progress_bar=False,
    )
    results = search.search(corpus, QUERY_SET, top_k=5, score_function="maxsim")
    assert len(search._chunks(3 * 32)) > 2
    _check(results, expected)  # query "d3" is a document id too: nothing is dropped
    assert search.vectors.dtype == np.float16

    # top_k beyond the corpus: every document, ranked; the index built above is reused
    everything = search.search(corpus, {"q2": QUERY_SET["q2"]}, top_k=100, score_function="cos_sim")
    assert list(everything) == ["q2"] and len(everything["q2"]) == len(corpus)
    _check(everything, _brute_force(model, corpus, {"q2": QUERY_SET["q2"]}, k=len(corpus)))


def test_single_query_none_titles_and_evaluate_retrieval(model):
    corpus = {
        "a": {"title": None, "text": "the earth orbits the sun"},
        "b": {"title": "moon", "text": None},
        "c": {"text": "tilt"},
    }
    retriever = EvaluateRetrieval(
        MaxSimSearch(model, show_progress_bar=False), k_values=[1, 2], score_function="maxsim"
    )
    results = retriever.retrieve(corpus, {"only": "what orbits the sun"})
    assert list(results) == ["only"] and len(results["only"]) == 2
    assert corpus["a"]["title"] is None and corpus["b"]["text"] is None  # the caller's corpus is untouched
    expected = _brute_force(model, corpus, {"only": "what orbits the sun"}, k=2)
    _check(results, expected)
    default = EvaluateRetrieval(
        MaxSimSearch(model, show_progress_bar=False), k_values=[1]
    )  # passes "cos_sim"
    _check(default.retrieve(corpus, {"only": "moon"}), _brute_force(model, corpus, {"only": "moon"}, k=1))


def test_index_dir_is_memory_mapped_and_reused(tiny, tmp_path, monkeypatch):
    model = PT2ColBERT(tiny, init="random", prefix_length=8)
    corpus = _corpus()
    expected = _brute_force(model, corpus, QUERY_SET, k=4)
    search = MaxSimSearch(model, index_dir=tmp_path / "index", corpus_chunk_size=7, show_progress_bar=False)
    _check(search.search(corpus, QUERY_SET, top_k=4), expected)
    assert (tmp_path / "index" / META_FILE).is_file() and (tmp_path / "index" / VECTORS_FILE).is_file()
    assert isinstance(search.vectors, np.memmap) and search.vectors.dtype == np.float16

    def refuse(*args, **kwargs):
        raise AssertionError("the saved index should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(model, "encode_doc_token_lists", refuse)
        again = MaxSimSearch(model, index_dir=tmp_path / "index", show_progress_bar=False)
        _check(again.search(corpus, QUERY_SET, top_k=4), expected)

    # other weights or another corpus: the index is rebuilt, not reused
    _perturb(model, seed=5)
    rebuilt = MaxSimSearch(model, index_dir=tmp_path / "index", show_progress_bar=False)
    _check(rebuilt.search(corpus, QUERY_SET, top_k=4), _brute_force(model, corpus, QUERY_SET, k=4))
    smaller = {k: corpus[k] for k in list(corpus)[:5]}
    _check(rebuilt.search(smaller, QUERY_SET, top_k=3), _brute_force(model, smaller, QUERY_SET, k=3))
    assert json.loads((tmp_path / "index" / META_FILE).read_text())["num_docs"] == 5


def test_search_arguments_are_checked(model):
    assert MaxSimSearch(model, mode="ann").mode == "ann"  # tested in test_maxsim_ann.py
    with pytest.raises(ConfigError, match="mode"):
        MaxSimSearch(model, mode="plaid")
    search = MaxSimSearch(model, show_progress_bar=False)
    with pytest.raises(ConfigError, match="score_function"):
        search.search({"a": {"text": "x"}}, {"q": "x"}, top_k=1, score_function="l2")
    with pytest.raises(ConfigError, match="empty"):
        search.search({}, {"q": "x"}, top_k=1)
    with pytest.raises(ConfigError, match="no queries"):
        search.search({"a": {"text": "x"}}, {}, top_k=1)
    with pytest.raises(ConfigError, match="top_k"):
        search.search({"a": {"text": "x"}}, {"q": "x"}, top_k=0)


def test_cli_evaluate_picks_maxsim_search_for_a_colbert_folder(model, tmp_path, capsys):
    from beir_peft.cli import main

    model.save(tmp_path / "colbert")
    assert main(["evaluate", "--model", str(tmp_path / "colbert"), "--k-values", "1,10", "-q"]) == 0
    assert "NDCG" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "colbert"), "--search", "faiss-flat", "-q"]) == 2
    assert "late-interaction" in capsys.readouterr().err


# ----------------------------------------------------------------------------- training
def test_pairwise_loss_equals_a_hand_computation(model):
    from beir_peft.losses import ColBERTPairwiseLoss

    model.module.eval()
    queries, positives, negatives = QUERIES[:2], DOCS[:2], DOCS[1:3]
    features = [
        model.tokenize_queries(queries),
        model.tokenize_docs(positives),
        model.tokenize_docs(negatives),
    ]
    value = ColBERTPairwiseLoss(model.module)(features)
    with torch.no_grad():
        q, qm = model.embed_queries(features[0])
        pos = torch.diagonal(maxsim(q, qm, *model.embed_docs(features[1])))
        neg = torch.diagonal(maxsim(q, qm, *model.embed_docs(features[2])))
    expected = -torch.log_softmax(torch.stack([pos, neg], dim=1), dim=1)[:, 0].mean()
    torch.testing.assert_close(value.detach(), expected, atol=1e-5, rtol=1e-5)
    in_batch = ColBERTPairwiseLoss(model.module, in_batch_negatives=True)(features[:2])
    assert torch.isfinite(in_batch)
    with pytest.raises(ConfigError, match="negative"):
        ColBERTPairwiseLoss(model.module)(features[:2])


@pytest.mark.parametrize("method", ["pt2-colbert", "colbert-ft"])
def test_cli_trains_colbert_with_backbone_negatives_and_evaluates(tiny, tmp_path, method):
    from beir_peft.cli import main

    out = tmp_path / method
    args = [
        "train",
        method,
        "--backbone",
        tiny,
        "--output",
        str(out),
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "-q",
    ]
    assert main(args + ["--set", "prefix_length=4"] if method == "pt2-colbert" else args) == 0
    assert (out / "hard_negatives.json").is_file()  # ColBERT's default: one mined negative, pairwise loss
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == method and config["training"]["hard_negatives"] == 1
    assert main(["evaluate", "--model", str(out), "--k-values", "1,10", "-q"]) == 0
