"""The supervised loop on the demo dataset with a tiny random BERT: it learns, checkpoints, resumes."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from tiny_models import build_tiny_bert
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

import beir_peft
from beir_peft import build_retriever
from beir_peft.data import load_dataset
from beir_peft.errors import ConfigError
from beir_peft.losses import DualEncoderMNRLoss
from beir_peft.methods.supervised import TrainingConfig, mine_hard_negatives, train, training_rows
from beir_peft.models.loading import load_model, new_retriever
from beir_peft.search.bm25 import BM25Search
from beir_peft.training.checkpoints import checkpoint_dirs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def demo_train():
    return load_dataset("demo", split="train")


def fresh(tiny, method="pt2-dpr"):
    torch.manual_seed(0)
    return (
        build_retriever(method, tiny, gate=False, init="random")
        if method == "pt2-dpr"
        else build_retriever(method, tiny)
    )


class Interrupt(Exception):
    pass


def test_loss_is_in_batch_cross_entropy(tiny):
    model = fresh(tiny)
    model.module.eval()  # no dropout: the loss and the hand computation see the same embeddings
    loss_fn = DualEncoderMNRLoss(model.module, scale=5.0)
    queries, passages = ["q one", "q two", "q three"], ["p one", "p two", "p three"]
    value = loss_fn([model.tokenize(queries), model.tokenize(passages)])
    with torch.no_grad():
        q = model.embed(model.tokenize(queries), "query")
        p = model.embed(model.tokenize(passages), "passage")
    expected = torch.nn.functional.cross_entropy(5.0 * q @ p.T, torch.arange(3))
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["pt2-dpr", "prompt", "bitfit", "lora", "ft"])
def test_every_method_trains_only_its_parameters(tiny, demo_train, tmp_path, method):
    model = fresh(tiny, method)
    before = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    losses = []
    train(
        model,
        demo_train,
        tmp_path / "run",
        TrainingConfig(epochs=2, batch_size=4, learning_rate=1e-2, checkpoint_every=0),
        show_progress_bar=False,
        on_step=lambda step, loss: losses.append(loss),
    )
    assert len(losses) == 2 * 2 and all(torch.isfinite(torch.tensor(losses)))
    trainable = {n for n, p in model.module.named_parameters() if p.requires_grad}
    for name, param in model.module.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        assert changed == (name in trainable) or (name in trainable and "lora_A" in name), name
    loaded = beir_peft.load(tmp_path / "run")
    assert loaded.config.to_dict() == model.config.to_dict()


# A random tiny BERT maps every text to nearly the same vector; a prefix can only move them a little
# (prompts need a pretrained backbone: the MiniLM integration test checks PT2 on real data).
@pytest.mark.parametrize(("method", "lr", "factor"), [("ft", 1e-3, 0.9), ("pt2-dpr", 1e-1, 0.999)])
def test_training_lowers_the_loss(tiny, demo_train, tmp_path, method, lr, factor):
    model = fresh(tiny, method)
    rows = training_rows(demo_train, None, 0, seed=0)

    def eval_loss():
        model.module.eval()
        loss_fn = DualEncoderMNRLoss(model.module, scale=1.0)
        with torch.no_grad():
            return float(
                loss_fn(
                    [
                        model.tokenize([r["query"] for r in rows]),
                        model.tokenize([r["positive"] for r in rows]),
                    ]
                )
            )

    before = eval_loss()
    config = TrainingConfig(epochs=10, batch_size=4, learning_rate=lr, scale=1.0, checkpoint_every=0)
    train(model, demo_train, tmp_path / "run", config, show_progress_bar=False)
    after = eval_loss()
    assert after < factor * before, (before, after)


def test_resume_continues_exactly_where_the_run_stopped(tiny, demo_train, tmp_path):
    # 11 pairs in batches of 4 give 2 steps per epoch. With a checkpoint every step, a run killed
    # during step 4 leaves step-3, taken in the middle of the second epoch.
    config = TrainingConfig(epochs=3, batch_size=4, learning_rate=1e-2, checkpoint_every=1)
    straight = fresh(tiny)
    train(straight, demo_train, tmp_path / "straight", config, show_progress_bar=False)

    def stop_at_4(step, loss):
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            fresh(tiny), demo_train, tmp_path / "killed", config, show_progress_bar=False, on_step=stop_at_4
        )
    assert [p.name for p in checkpoint_dirs(tmp_path / "killed")] == ["step-2", "step-3"]
    assert not (tmp_path / "killed" / "config.json").exists()

    with pytest.raises(ConfigError, match="--resume"):
        train(fresh(tiny), demo_train, tmp_path / "killed", config, show_progress_bar=False)
    steps = []
    resumed = fresh(tiny)
    train(
        resumed,
        demo_train,
        tmp_path / "killed",
        config,
        resume=True,
        show_progress_bar=False,
        on_step=lambda step, loss: steps.append(step),
    )
    assert steps == [4, 5, 6]
    assert checkpoint_dirs(tmp_path / "killed") == []  # the finished folder supersedes them
    for (name, a), b in zip(
        straight.trainable_state_dict().items(), resumed.trainable_state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_resume_refuses_changed_settings(tiny, demo_train, tmp_path):
    def stop(step, loss):
        if step == 3:
            raise Interrupt

    config = TrainingConfig(epochs=2, batch_size=4, checkpoint_every=2)
    with pytest.raises(Interrupt):
        train(fresh(tiny), demo_train, tmp_path / "run", config, show_progress_bar=False, on_step=stop)
    with pytest.raises(ConfigError, match="batch_size"):
        train(
            fresh(tiny),
            demo_train,
            tmp_path / "run",
            TrainingConfig(epochs=2, batch_size=3, checkpoint_every=2),
            resume=True,
            show_progress_bar=False,
        )


def test_hard_negatives_are_mined_and_exclude_positives(tiny, demo_train):
    model = fresh(tiny)
    negatives = mine_hard_negatives(model, demo_train, depth=5, show_progress_bar=False)
    assert set(negatives) == set(demo_train.qrels)
    for qid, docs in negatives.items():
        assert len(docs) == 5 and not set(docs) & set(demo_train.qrels[qid])
    rows = training_rows(demo_train, negatives, count=2, seed=0)
    assert len(rows) == len(demo_train.train_pairs()) and set(rows[0]) == {
        "query",
        "positive",
        "negative_1",
        "negative_2",
    }


def test_training_with_a_hard_negative(tiny, demo_train, tmp_path):
    config = TrainingConfig(epochs=1, batch_size=4, hard_negatives=1, negative_depth=5, checkpoint_every=0)
    train(fresh(tiny), demo_train, tmp_path / "run", config, show_progress_bar=False)
    assert (tmp_path / "run" / "hard_negatives.json").is_file()
    assert beir_peft.load(tmp_path / "run").method == "pt2-dpr"


def test_bm25_hard_negatives(tiny, demo_train, tmp_path):
    negatives = mine_hard_negatives(BM25Search(show_progress_bar=False), demo_train, depth=3)
    assert set(negatives) == set(demo_train.qrels)
    for qid, docs in negatives.items():
        assert docs and not set(docs) & set(demo_train.qrels[qid])
    config = TrainingConfig(
        epochs=1, batch_size=4, hard_negatives=1, negative_depth=3, negative_miner="bm25", checkpoint_every=0
    )
    train(fresh(tiny), demo_train, tmp_path / "run", config, show_progress_bar=False)
    cached = json.loads((tmp_path / "run" / "hard_negatives.json").read_text(encoding="utf-8"))
    assert cached["miner"] == "bm25" and cached["negatives"] == negatives


def test_unified_negatives_interleave_both_miners_and_guard_false_negatives(tiny, demo_train, tmp_path):
    from beir_peft.methods.hard_negatives import dense_scores, unified_negatives

    dense = load_model(tiny)
    bm25 = BM25Search(show_progress_bar=False)
    dense_top = mine_hard_negatives(dense, demo_train, depth=6, show_progress_bar=False)
    bm25_top = mine_hard_negatives(bm25, demo_train, depth=6)
    unguarded = unified_negatives(
        dense, demo_train, depth=6, margin=-100.0, bm25=bm25, show_progress_bar=False
    )
    assert set(unguarded) == set(demo_train.qrels)
    for qid, docs in unguarded.items():
        interleaved = list(
            dict.fromkeys(d for pair in zip(dense_top[qid], bm25_top[qid], strict=False) for d in pair)
        )
        assert docs == interleaved[:6]  # dense 1, BM25 1, dense 2, ... each passage once
        assert not set(docs) & set(demo_train.qrels[qid])
    guarded = unified_negatives(dense, demo_train, depth=6, margin=0.0, bm25=bm25, show_progress_bar=False)
    every = unified_negatives(dense, demo_train, depth=60, margin=-100.0, bm25=bm25, show_progress_bar=False)
    pairs = {(q, d) for q in guarded for d in [*guarded[q], *demo_train.qrels[q]]}
    scores = dense_scores(dense, demo_train, pairs)
    dropped = 0
    for qid, docs in guarded.items():
        lowest_positive = min(scores[(qid, d)] for d in demo_train.qrels[qid])
        assert all(scores[(qid, d)] < lowest_positive for d in docs)
        kept = [d for d in every[qid] if scores.get((qid, d), lowest_positive) < lowest_positive]
        assert docs == kept[:6]  # the candidates' order, the guarded ones removed
        dropped += len(docs) < min(6, len(every[qid]))
    assert dropped > 0  # a random tiny model ranks some candidates above the positives
    colbert = new_retriever("pt2-colbert", tiny, init="random", prefix_length=4)
    with pytest.raises(ConfigError, match="late-interaction"):
        unified_negatives(colbert, demo_train, bm25=bm25, show_progress_bar=False)
    assert all(not docs for docs in unified_negatives(dense, demo_train, depth=6, margin=100.0, bm25=bm25,
                                                       show_progress_bar=False).values())  # fmt: skip


def test_training_with_unified_negatives_from_a_first_round(tiny, demo_train, tmp_path):
    config = TrainingConfig(epochs=1, batch_size=4, checkpoint_every=0)
    first = train(fresh(tiny), demo_train, tmp_path / "round1", config, show_progress_bar=False)
    second = TrainingConfig(epochs=1, batch_size=4, checkpoint_every=0, hard_negatives=1, negative_depth=8,
                            negative_miner="unified", negatives_from=str(first), false_negative_margin=-1.0)  # fmt: skip
    train(fresh(tiny), demo_train, tmp_path / "round2", second, show_progress_bar=False)
    cached = json.loads((tmp_path / "round2" / "hard_negatives.json").read_text(encoding="utf-8"))
    assert (cached["miner"], cached["negatives_from"], cached["false_negative_margin"]) == (
        "unified",
        str(first),
        -1.0,
    )
    record = json.loads((tmp_path / "round2" / "config.json").read_text(encoding="utf-8"))["training"]
    assert record["negative_miner"] == "unified" and record["negatives_from"] == str(first)
    with pytest.raises(ConfigError, match="bm25 miner takes none"):
        TrainingConfig(hard_negatives=1, negative_miner="bm25", negatives_from=str(first))


def test_bad_training_settings(tiny, demo_train, tmp_path):
    with pytest.raises(ConfigError, match="negative_miner"):
        TrainingConfig(negative_miner="splade")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainingConfig(batch_size=1)
    with pytest.raises(ConfigError, match="negative_depth"):
        TrainingConfig(hard_negatives=5, negative_depth=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        train(
            fresh(tiny),
            demo_train,
            tmp_path / "file",
            TrainingConfig(epochs=1, batch_size=4),
            show_progress_bar=False,
        )


def test_backbone_dropout_can_be_switched_off(tiny, demo_train, tmp_path):
    model = fresh(tiny)
    modes = []
    config = TrainingConfig(epochs=1, batch_size=4, checkpoint_every=0, backbone_dropout=False)
    train(
        model,
        demo_train,
        tmp_path / "run",
        config,
        show_progress_bar=False,
        on_step=lambda step, loss: modes.append(
            (model.module.backbone.training, model.prompts["query"].training)
        ),
    )
    assert modes and all(mode == (False, True) for mode in modes)  # prefix dropout still on


@pytest.mark.parametrize(
    ("method", "dropout"),
    [("pt2-dpr", True), ("pt2-dpr", False), ("ft", True), ("pt2-colbert", True), ("pt2-colbert", False)],
)
def test_gradient_checkpointing_trains_the_same_weights(tiny, demo_train, tmp_path, method, dropout):
    """Recomputed activations (dropout masks replayed) give the plain run's weights; with the
    backbone in eval mode the layers are still checkpointed, their attention still without dropout."""
    trained, checkpointing = {}, []
    for on in (False, True):
        torch.manual_seed(0)
        model = (
            fresh(tiny, method)
            if method != "pt2-colbert"
            else new_retriever(method, tiny, init="random", prefix_length=4)
        )
        config = TrainingConfig(
            epochs=1, batch_size=4, learning_rate=1e-2 if method == "pt2-dpr" else 1e-4, checkpoint_every=0,
            gradient_checkpointing=on, backbone_dropout=dropout,
        )  # fmt: skip
        backbone = model.module.backbone
        encoder = backbone if isinstance(backbone, PreTrainedModel) else backbone[0].auto_model
        layers = [m for m in encoder.modules() if isinstance(m, GradientCheckpointingLayer)]
        attention = encoder.encoder.layer[0].attention.self

        def seen(step, loss, layers=layers, attention=attention):
            # what decides: a layer is recomputed when it is checkpointing *and* in training mode
            checkpointing.append(all(m.gradient_checkpointing and m.training for m in layers))
            assert attention.training is dropout

        train(model, demo_train, tmp_path / f"run-{on}", config, show_progress_bar=False, on_step=seen)
        trained[on] = {name: tensor.clone() for name, tensor in model.trainable_state_dict().items()}
    assert checkpointing and checkpointing[0] is False and checkpointing[-1] is True
    assert trained[False].keys() == trained[True].keys()
    for name, tensor in trained[False].items():
        torch.testing.assert_close(trained[True][name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_pt2_dpr_trains_its_backbone_in_eval_mode_by_default(tiny, demo_train, tmp_path):
    modes = {}
    for method in ("pt2-dpr", "lora"):
        model = fresh(tiny, method)
        seen = modes.setdefault(method, [])
        train(model, demo_train, tmp_path / method, TrainingConfig(epochs=1, batch_size=4, checkpoint_every=0),
              show_progress_bar=False, on_step=lambda step, loss, m=model, seen=seen: seen.append(m.module.backbone.training))  # fmt: skip
        record = json.loads((tmp_path / method / "config.json").read_text(encoding="utf-8"))["training"]
        assert record["backbone_dropout"] is (method != "pt2-dpr")  # the resolved setting is recorded
    assert modes["pt2-dpr"] and not any(modes["pt2-dpr"])  # the decided default (docs/results.md)
    assert modes["lora"] and all(modes["lora"])  # other methods: the paper's train mode


def test_resume_refuses_a_finished_run_made_otherwise(tiny, demo_train, tmp_path):
    config = TrainingConfig(epochs=1, batch_size=4, learning_rate=1e-2, checkpoint_every=0)
    train(fresh(tiny), demo_train, tmp_path / "run", config, show_progress_bar=False)
    before = (tmp_path / "run" / "config.json").read_bytes()
    # the same run again: nothing to do
    assert train(fresh(tiny), demo_train, tmp_path / "run", config, resume=True, show_progress_bar=False)
    with pytest.raises(
        ConfigError,
        match=r"config.json: cannot resume with different settings \(method: 'pt2-dpr' -> 'lora'\)",
    ):
        train(fresh(tiny, "lora"), demo_train, tmp_path / "run", config, resume=True, show_progress_bar=False)
    test_split = load_dataset("demo", split="test")
    with pytest.raises(ConfigError, match="split: 'train' -> 'test'"):
        train(fresh(tiny), test_split, tmp_path / "run", config, resume=True, show_progress_bar=False)
    assert (tmp_path / "run" / "config.json").read_bytes() == before


def test_epoch_seconds_cover_every_segment_of_a_resumed_run(tiny, demo_train, tmp_path, monkeypatch):
    # 11 pairs in batches of 4: 2 steps per epoch. On the loop's clock the first run spends 1000 s
    # in its single epoch's first step, is checkpointed after it and killed in the second; the
    # resumed run takes no time on that clock.
    import types

    import beir_peft.training.loop as supervised

    clock = [0.0]
    monkeypatch.setattr(supervised, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    config = TrainingConfig(epochs=1, batch_size=4, learning_rate=1e-2, checkpoint_every=1)

    def slow_then_killed(step, loss):
        if step == 1:
            clock[0] += 1000.0
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(
            fresh(tiny),
            demo_train,
            tmp_path / "run",
            config,
            show_progress_bar=False,
            on_step=slow_then_killed,
        )
    train(fresh(tiny), demo_train, tmp_path / "run", config, resume=True, show_progress_bar=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))["training"]
    assert record["epoch_seconds"] == [1000.0]
