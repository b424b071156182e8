"""The supervised loop on the demo dataset with a tiny random BERT: it learns, checkpoints, resumes."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import build_retriever
from beir_peft.data import load_dataset
from beir_peft.errors import ConfigError
from beir_peft.losses import DualEncoderMNRLoss
from beir_peft.methods.supervised import TrainingConfig, mine_hard_negatives, train, training_rows
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
