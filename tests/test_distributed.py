"""Training on 2 processes for real: ``torchrun --standalone --nproc_per_node 2`` on the CPU (gloo).

A 2-process run with per-process batch B trains on the batches, in-batch negatives and loss of one
process with batch 2B (issue 14): the same first (and second) step loss, the same trained tensors,
a folder that loads and evaluates, and a resume with another number of processes refused. GPL's
stages split their work by rank (generation and labelling by shard, mining by the passages'
encoding) and write the files of one process. ART and DDR's DAM split each global batch between
the processes and train as one process with the doubled batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from tiny_models import build_tiny_bert, build_tiny_cross_encoder, build_tiny_t5

#: pt2-dpr with no dropout anywhere, two steps of which the first is in warm-up, one checkpoint
TRAIN = ["train", "pt2-dpr", "--max-steps", "2", "--checkpoint-every", "1", "--no-backbone-dropout",
         "--set", "prefix_dropout=0", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"))


def _torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "beir_peft.cli", *args]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _record(folder) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))["training"]


def test_two_processes_train_as_one_with_the_doubled_batch(tiny_backbone, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from beir_peft import load
    from beir_peft.cli import main

    two, one = tmp_path / "two", tmp_path / "one"
    backbone = ["--backbone", str(tiny_backbone)]
    done = _torchrun(*TRAIN, *backbone, "--batch-size", "2", "--output", str(two))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("saved ") == 1  # rank 0 alone speaks
    assert main([*TRAIN, *backbone, "--batch-size", "4", "--output", str(one)]) == 0

    trained_two, trained_one = _record(two), _record(one)
    assert (trained_two["world_size"], trained_one["world_size"]) == (2, 1)
    assert trained_two["batch_size"] == 2 and trained_two["steps"] == trained_one["steps"] == 2
    for key in ("first_loss", "last_loss"):  # the mean over the processes: another reduction order
        assert trained_two[key] == pytest.approx(trained_one[key], rel=1e-5), key
    weights_two, weights_one = load_file(two / "weights.safetensors"), load_file(one / "weights.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for name in weights_one:
        torch.testing.assert_close(weights_two[name], weights_one[name], rtol=1e-4, atol=1e-5)
    assert not (two / "checkpoints").exists()

    texts = ["what is a protein", "cells divide"]
    torch.testing.assert_close(
        load(two).encode_queries(texts, convert_to_tensor=True),
        load(one).encode_queries(texts, convert_to_tensor=True),
        rtol=1e-4,
        atol=1e-5,
    )
    assert main(["evaluate", "--model", str(two), "-q", "--k-values", "10"]) == 0

    # a run made on 2 processes is not continued (nor returned as finished) on 1
    capsys.readouterr()
    assert main([*TRAIN, *backbone, "--batch-size", "2", "--output", str(two), "--resume"]) == 2
    assert "world_size: 2 -> 1" in capsys.readouterr().err


def test_gpl_on_two_processes_writes_the_files_of_one_process(tiny_backbone, tmp_path):
    """Generation, mining (the passages' encoding split: sharded exact search) and labelling split by
    rank; the queries, negatives and triples equal one process's with the doubled batch (the same
    triples budget) and the same sharded search, byte for byte."""
    from beir_peft import load
    from beir_peft.cli import main
    from beir_peft.methods.gpl.pipeline import CONFIG_FILE, NEGATIVES_FILE, QUERIES_FILE, TRAINING_FILE

    models = tmp_path / "models"
    t5, ce = build_tiny_t5(models / "t5"), build_tiny_cross_encoder(models / "ce")
    gpl = ["adapt", "gpl", "-d", "demo", "--preset", "tiny", "--student", "pt2-dpr", "--backbone", str(tiny_backbone),
           "--generator", str(t5), "--cross-encoder", str(ce), "--miner", str(tiny_backbone), "--miner", "bm25",
           "--queries-per-passage", "1", "--num-passages", "12", "--steps", "2", "--set", "max_query_length=8",
           "--set", "max_seq_length=64", "--set", "warmup_steps=0", "--set", "shard_size=4",
           "--set", "negatives_per_miner=3", "--device", "cpu", "-q"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    done = _torchrun(*gpl, "--batch-size", "2", "-o", str(two))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*gpl, "--batch-size", "4", "--set", "mining_search=sharded", "-o", str(one)]) == 0

    for name in (QUERIES_FILE, NEGATIVES_FILE, TRAINING_FILE):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    assert not (two / f"{NEGATIVES_FILE}.vectors").exists()  # the mining shards go once merged
    assert json.loads((two / CONFIG_FILE).read_text(encoding="utf-8"))["world_size"] == 2
    assert (
        load(two).encode_queries(["cells divide"]).shape == load(one).encode_queries(["cells divide"]).shape
    )
    assert main(["evaluate", "--model", str(two), "-q", "--k-values", "10"]) == 0


@pytest.fixture(scope="module")
def still_backbone(tmp_path_factory):
    """The tiny BERT without dropout: 2 processes and 1 can then agree to float tolerance."""
    return build_tiny_bert(tmp_path_factory.mktemp("still"), dropout=0.0)


def _assert_same_weights(two, one, name: str, noise: tuple[str, ...] = ()) -> None:
    """The tensors of ``name`` in both folders agree, except those named in ``noise`` (present in both)."""
    import torch
    from safetensors.torch import load_file

    weights_two, weights_one = load_file(two / name), load_file(one / name)
    assert weights_two.keys() == weights_one.keys()
    assert set(noise) <= weights_one.keys()
    for key in weights_one.keys() - set(noise):
        torch.testing.assert_close(weights_two[key], weights_one[key], rtol=1e-4, atol=1e-5, msg=key)


def test_art_on_two_processes_trains_as_one_with_the_doubled_batch(still_backbone, tmp_path, capsys):
    """Every process retrieves for the global batch and trains on its half, the teacher scoring only
    that half; the loss, the teacher's pairs and the trained encoders equal one process's with the
    doubled batch, and the folder says it was trained on 2. The adaptation check's retrieval is
    split between the processes too, and scores the start as one process does."""
    from beir_peft.cli import main

    teacher = build_tiny_t5(tmp_path / "t5")
    art = ["adapt", "art", "-d", "demo", "--questions", "train", "--student", "ft", "--backbone", str(still_backbone),
           "--teacher", str(teacher), "--top-k", "3", "--max-steps", "3", "--refresh-every", "2",
           "--checkpoint-every", "1", "--lr", "1e-3", "--device", "cpu", "-q"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    done = _torchrun(*art, "--batch-size", "3", "-o", str(two))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*art, "--batch-size", "6", "-o", str(one)]) == 0

    trained_two, trained_one = _record(two), _record(one)
    assert (trained_two["world_size"], trained_one["world_size"]) == (2, 1)
    for key in ("teacher_pairs_scored", "uninformative_questions", "steps"):
        assert trained_two[key] == trained_one[key], key
    # The passage encoder's last LayerNorm bias shifts every passage vector alike, which a softmax over
    # one question's passages ignores: its gradient is float noise, and Adam turns noise into full steps.
    _assert_same_weights(two, one, "weights.safetensors",
                         noise=("passage_backbone.0.model.encoder.layer.1.output.LayerNorm.bias",))  # fmt: skip
    # the random teacher is nearly uniform, so the KL is about 3e-4: absolute differences of 1e-8
    # (the teacher scoring half the pairs per batch) are relative ones of 1e-4
    for key in ("first_loss", "last_loss"):
        assert trained_two[key] == pytest.approx(trained_one[key], rel=1e-3), key
    assert not (two / "checkpoints").exists()
    assert main(["evaluate", "--model", str(two), "-q", "--k-values", "10"]) == 0

    # the 20 test questions hold 2 out for the adaptation check (the 10 train ones are too few)
    checked = [*art, "--questions", "test", "--max-steps", "1", "--batch-size", "3"]
    done = _torchrun(*checked, "-o", str(tmp_path / "checked-two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*checked, "-o", str(tmp_path / "checked-one")]) == 0
    check_two = _record(tmp_path / "checked-two")["adaptation_check"]
    check_one = _record(tmp_path / "checked-one")["adaptation_check"]
    assert check_two["held_out_queries"] == check_one["held_out_queries"] > 0
    assert check_two["start"] == check_one["start"]  # the same untrained student, its search split in 2
    assert done.stderr.count("adaptation check") + done.stderr.count("warning: the adapted") == 1

    capsys.readouterr()
    assert main([*art, "--batch-size", "3", "-o", str(two)]) == 2  # a 2-process run is not taken for 1's
    assert "world_size: 2 -> 1" in capsys.readouterr().err


def test_dam_on_two_processes_trains_as_one_with_the_doubled_batch(still_backbone, tmp_path, capsys):
    """Both processes mask the same global batch and train on their halves: the MLM loss and the
    trained encoder and head equal one process's with the doubled batch."""
    from beir_peft.cli import main
    from beir_peft.methods.ddr import read_dam

    dam = ["ddr", "dam", "--corpus", "demo", "--init", str(still_backbone), "--steps", "3", "--checkpoint-every",
           "1", "--lr", "1e-3", "--max-seq-length", "48", "--device", "cpu", "-q"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    done = _torchrun(*dam, "--batch-size", "4", "-o", str(two))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*dam, "--batch-size", "8", "-o", str(one)]) == 0

    made_two, made_one = read_dam(two), read_dam(one)
    assert (made_two["world_size"], made_one["world_size"]) == (2, 1)
    for key in ("first_loss", "last_loss"):
        assert made_two[key] == pytest.approx(made_one[key], rel=1e-5), key
    _assert_same_weights(two, one, "mlm_head.safetensors")
    _assert_same_weights(two, one, "model.safetensors")
    assert not two.with_name("two.run").exists()

    capsys.readouterr()
    assert main([*dam, "--batch-size", "4", "-o", str(two)]) == 2
    assert "world_size: 2 -> 1" in capsys.readouterr().err
