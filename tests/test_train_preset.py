"""``beir-peft train --preset paper``: Tam et al. 2022 appendix B.1's PT2-DPR setting, overridable."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from tiny_models import build_tiny_bert

from beir_peft.cli import main
from beir_peft.errors import ConfigError
from beir_peft.methods import supervised
from beir_peft.methods.supervised import TrainingConfig
from beir_peft.methods.train_presets import train_preset

pytestmark = pytest.mark.usefixtures("no_network_data")

#: appendix B.1, "DPR with P-tuning v2", with DPR's loss (no temperature, one hard negative)
PAPER_TRAINING = {"epochs": 40, "batch_size": 128, "learning_rate": 1e-2, "warmup_ratio": 0.05,
                  "weight_decay": 0.0, "scale": 1.0, "hard_negatives": 1, "negative_miner": "bm25",
                  "backbone_dropout": True}  # fmt: skip
PAPER_MODEL = {"prefix_length": 100, "prefix_dropout": 0.1, "gate": False, "init": "random", "init_std": 1.0,
               "share_prompts": False, "projection": False, "shift_positions": False, "pooling": "cls",
               "score_function": "dot", "max_seq_length": 256}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Runs ``beir-peft train`` up to the training call and returns the retriever and config it got."""
    calls = {}

    def fake_train(retriever, data, output, config, **kwargs):
        calls.update(retriever=retriever, config=config)
        return output

    monkeypatch.setattr(supervised, "train", fake_train)

    def run(capsys, *argv: str):
        status = main(["train", *argv, "--output", str(tmp_path / "run"), "-q"])
        err = capsys.readouterr().err
        assert status == 0, err
        return calls["retriever"], calls["config"]

    return run


def test_python_preset_has_every_paper_value():
    config = TrainingConfig.from_preset("paper")
    for key, value in PAPER_TRAINING.items():
        assert getattr(config, key) == value, key
    assert config.preset == "paper"
    assert dict(train_preset("paper", "pt2-dpr").model) == PAPER_MODEL
    assert TrainingConfig.from_preset("paper", epochs=100).epochs == 100
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainingConfig.from_preset("paper", epoch=3)
    with pytest.raises(ConfigError, match="pt2-dpr only"):
        TrainingConfig.from_preset("paper", method="lora")


def test_cli_preset_sets_every_paper_value(tiny, captured, capsys):
    retriever, config = captured(capsys, "pt2-dpr", "--preset", "paper", "--backbone", tiny)
    for key, value in PAPER_TRAINING.items():
        assert getattr(config, key) == value, key
    assert config.preset == "paper"
    for key, value in PAPER_MODEL.items():
        assert getattr(retriever.config, key) == value, key
    assert retriever.prompts["query"].length == 100 and not retriever.prompts["query"].gated


def test_explicit_options_override_the_preset(tiny, captured, capsys):
    retriever, config = captured(
        capsys, "pt2-dpr", "--preset", "paper", "--backbone", tiny, "--epochs", "2", "--batch-size", "8",
        "--lr", "0.003", "--scale", "20", "--hard-negatives", "0", "--no-backbone-dropout",
        "--prefix-length", "8", "--pooling", "mean", "--set", "gate=true", "--set", "max_seq_length=64",
    )  # fmt: skip
    assert (config.epochs, config.batch_size, config.learning_rate, config.scale) == (2, 8, 0.003, 20.0)
    assert config.hard_negatives == 0 and config.negative_miner == "backbone"  # nothing left to mine
    assert config.backbone_dropout is False
    assert (config.warmup_ratio, config.preset) == (0.05, "paper")  # what was not given stays the paper's
    model = retriever.config
    assert (model.prefix_length, model.pooling, model.gate, model.max_seq_length) == (8, "mean", True, 64)
    assert model.init == "random"


def test_without_a_preset_the_defaults_stay(tiny, captured, capsys):
    retriever, config = captured(capsys, "pt2-dpr", "--backbone", tiny)
    assert (config.epochs, config.batch_size, config.scale, config.hard_negatives) == (3, 32, 20.0, 0)
    assert config.learning_rate is None and config.preset is None
    assert retriever.config.prefix_length == 32 and retriever.config.gate


def test_preset_for_another_method_is_one_line_error(tiny, tmp_path, capsys):
    status = main(["train", "lora", "--preset", "paper", "--backbone", tiny, "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: preset 'paper' is defined for pt2-dpr only, not lora (Tam et al. 2022, appendix B.1)"
    ]


def test_train_with_the_paper_preset_end_to_end(tiny, tmp_path, capsys):
    folder = tmp_path / "run"
    status = main(
        ["train", "pt2-dpr", "--preset", "paper", "--backbone", tiny, "--output", str(folder), "-q",
         "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--prefix-length", "4",
         "--set", "max_seq_length=64"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    record = config["training"]
    assert record["preset"] == "paper" and record["steps"] == 2
    assert (record["learning_rate"], record["scale"], record["warmup_ratio"]) == (1e-2, 1.0, 0.05)
    assert (record["hard_negatives"], record["negative_miner"]) == (1, "bm25")
    assert (config["gate"], config["init"], config["pooling"], config["prefix_length"]) == (
        False,
        "random",
        "cls",
        4,
    )
    assert json.loads((folder / "hard_negatives.json").read_text(encoding="utf-8"))["miner"] == "bm25"


def test_in_batch_negatives_flag(tiny, captured, capsys, tmp_path):
    _, config = captured(capsys, "pt2-colbert", "--backbone", tiny, "--in-batch-negatives")
    assert config.in_batch_negatives is True and config.hard_negatives == 1
    status = main(["train", "pt2-dpr", "--in-batch-negatives", "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "only for pt2-colbert and colbert-ft" in err
