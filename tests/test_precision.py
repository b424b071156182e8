"""Reduced-precision encoding (``encoding_dtype``, ``--dtype``): float32 out, float32 weights kept.

Every retriever kind encodes in bfloat16 close to its float32 vectors (cosine per row), returns
float32, leaves its float32 weights bit-identical, and gets another fingerprint. Tiny random BERTs
and the real all-MiniLM-L6-v2 on the bundled demo dataset; seconds.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert, randomise_trainable

import beir_peft
from beir_peft import PT2DPR, PT2ColBERT, load_domains
from beir_peft.cli import main
from beir_peft.errors import ConfigError
from beir_peft.models.loading import load_model
from beir_peft.models.precision import cast_floating
from beir_peft.models.tuned import TunedConfig, TunedRetriever

TEXTS = [
    "The tilt of the Earth's axis causes the seasons.",
    "what causes the seasons?",
    "Transcription factors bind specific DNA sequences in yeast and regulate nearby genes.",
    "x",
]
#: bfloat16 keeps 8 bits of mantissa: per-row cosine to float32 on a random 2-layer BERT
MIN_COSINE = 0.995


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


def _randomise(retriever, seed: int = 0, scale: float = 0.3):
    return randomise_trainable(retriever, seed, scale)


def _weights(module) -> dict[str, torch.Tensor]:
    return {
        name: t.detach().clone()
        for name, t in {**dict(module.named_parameters()), **dict(module.named_buffers())}.items()
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _check_half_encoding(retriever, encode, module) -> None:
    """float32 vs bfloat16 through ``encode``: close, float32 out, weights untouched, other fingerprint."""
    before = _weights(module)
    reference = encode()
    fingerprint = retriever.fingerprint()
    retriever.encoding_dtype = "bfloat16"
    half = encode()
    assert half.dtype == np.float32
    assert _cosines(reference, half).min() >= MIN_COSINE
    assert not np.array_equal(reference, half)  # it really ran in bfloat16
    assert retriever.fingerprint() != fingerprint
    for name, tensor in _weights(module).items():
        assert tensor.dtype == before[name].dtype and torch.equal(tensor, before[name]), name
    retriever.encoding_dtype = "float32"
    assert np.array_equal(encode(), reference)
    assert retriever.fingerprint() == fingerprint


# ----------------------------------------------------------------------------- the cast itself
def test_cast_floating_swaps_in_copies_and_restores_the_same_tensors():
    module = torch.nn.Linear(3, 2)
    module.register_buffer("steps", torch.tensor([1, 2]))  # integers are left alone
    weight = module.weight.data
    cache: dict = {}
    with cast_floating(module, torch.bfloat16, cache):
        assert module.weight.dtype == torch.bfloat16 and module.steps.dtype == torch.int64
        copy_address = module.weight.data_ptr()
    assert module.weight.dtype == torch.float32
    assert module.weight.data_ptr() == weight.data_ptr() and torch.equal(module.weight.data, weight)
    with cast_floating(module, torch.bfloat16, cache):  # unchanged weights: the kept copy
        assert module.weight.data_ptr() == copy_address
    with torch.no_grad():
        module.weight.add_(1.0)  # a changed weight gets a fresh copy of its new values
    with cast_floating(module, torch.bfloat16, cache):
        assert torch.equal(module.weight.float(), (weight).to(torch.bfloat16).float())


def test_cast_floating_restores_the_weights_when_the_block_raises():
    module = torch.nn.Linear(3, 2)
    with pytest.raises(RuntimeError), cast_floating(module, torch.float16):
        raise RuntimeError("inside")
    assert module.weight.dtype == torch.float32


def test_an_unknown_dtype_is_refused_in_one_line(tiny):
    retriever = PT2DPR(tiny, init="random", prefix_length=2)
    with pytest.raises(
        ConfigError, match="encoding dtype must be one of float32, bfloat16, float16, got 'int8'"
    ):
        retriever.encoding_dtype = "int8"
    with pytest.raises(ConfigError, match="encoding dtype"):
        load_model(tiny, dtype="half")


# ----------------------------------------------------------------------------- every retriever kind
@pytest.mark.parametrize("method", ["pt2-dpr", "ft", "lora", "prompt", "bitfit", "ddr"])
def test_tuned_methods_encode_in_bfloat16_close_to_float32(tiny, method):
    retriever = _randomise(TunedRetriever(TunedConfig(method=method, backbone=tiny)))
    _check_half_encoding(retriever, lambda: retriever.encode_corpus(TEXTS), retriever.trainable_module())


def test_a_plain_sentence_transformers_model_and_float16(tiny):
    retriever = load_model(tiny)
    _check_half_encoding(retriever, lambda: retriever.encode_queries(TEXTS), retriever.model)
    retriever.encoding_dtype = "float16"
    half = retriever.encode_queries(TEXTS, convert_to_tensor=True)
    assert half.dtype == torch.float32


def test_pt2_colbert_token_vectors_in_bfloat16(tiny):
    retriever = _randomise(PT2ColBERT(tiny, init="random", prefix_length=3, dim=16))

    def encode():
        return torch.cat(retriever.encode_doc_token_lists(TEXTS)).numpy()

    _check_half_encoding(retriever, encode, retriever.module)
    retriever.encoding_dtype = "bfloat16"
    queries, mask = retriever.encode_query_tokens(TEXTS)
    assert queries.dtype == torch.float32 and mask.dtype == torch.bool


def test_a_saved_folder_loads_with_an_encoding_dtype(tiny, tmp_path):
    _randomise(PT2DPR(tiny, init="random", prefix_length=2)).save(tmp_path / "m")
    loaded = beir_peft.load(tmp_path / "m", dtype="bfloat16")
    assert loaded.encoding_dtype == "bfloat16"
    assert all(p.dtype == torch.float32 for p in loaded.trainable_module().parameters())
    assert loaded.encode_corpus(TEXTS).dtype == np.float32


def test_served_domains_encode_in_bfloat16(tiny, tmp_path):
    _randomise(PT2DPR(tiny, init="random", prefix_length=2)).save(tmp_path / "a")
    served = load_domains({"a": str(tmp_path / "a"), "plain": None})
    rows = ["a", "plain", "a", "plain"]
    reference = served.encode_corpus(TEXTS, domains=rows)
    fingerprint = served["a"].fingerprint()
    served.encoding_dtype = "bfloat16"
    half = served.encode_corpus(TEXTS, domains=rows)
    assert half.dtype == np.float32 and _cosines(reference, half).min() >= MIN_COSINE
    assert served["a"].encoding_dtype == "bfloat16" and served["a"].fingerprint() != fingerprint


# ----------------------------------------------------------------------------- the command line
def test_evaluate_dtype_bfloat16_on_the_demo_dataset_records_it(no_network_data, tmp_path, capsys):
    scores = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.json"
        status = main(["evaluate", "--dtype", dtype, "--output", str(out), "-q"])
        assert status == 0, capsys.readouterr().err
        written = json.loads(out.read_text())
        assert written["config"]["encoding_dtype"] == dtype
        scores[dtype] = written["metrics"]["NDCG@10"]
    assert abs(scores["bfloat16"] - scores["float32"]) <= 0.02


def test_evaluate_bm25_refuses_a_reduced_dtype(no_network_data, capsys):
    pytest.importorskip("bm25s")
    status = main(["evaluate", "--model", "bm25", "--dtype", "bfloat16", "-q"])
    err = capsys.readouterr().err
    assert status != 0 and "bm25 is lexical" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- mixed-precision training
def test_mixed_precision_bf16_trains_and_records_it(tiny, tmp_path):
    from beir_peft.data import load_dataset
    from beir_peft.methods.supervised import train
    from beir_peft.training.config import TrainingConfig

    dataset = load_dataset("demo", split="test")
    retriever = PT2DPR(tiny, init="random", prefix_length=2)
    before = {n: p.detach().clone() for n, p in retriever.module.named_parameters() if p.requires_grad}
    config = TrainingConfig(epochs=1, batch_size=4, max_steps=2, checkpoint_every=0, mixed_precision="bf16")
    output = train(retriever, dataset, tmp_path / "run", config=config, show_progress_bar=False)
    loaded = beir_peft.load(output)
    assert all(p.dtype == torch.float32 for p in loaded.trainable_module().parameters())
    after = dict(loaded.module.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    assert json.loads((output / "config.json").read_text())["training"]["mixed_precision"] == "bf16"


def test_mixed_precision_fp16_without_a_gpu_is_one_line(tiny, tmp_path, no_network_data, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is there: fp16 is allowed")
    status = main(["train", "pt2-dpr", "--backbone", tiny, "--output", str(tmp_path / "r"), "--max-steps", "1",
                   "--mixed-precision", "fp16", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status != 0 and "fp16 needs a CUDA GPU" in err and "Traceback" not in err


def test_compare_config_takes_a_dtype_and_refuses_a_bad_one():
    from beir_peft.analysis.compare import CompareConfig

    assert CompareConfig(models={"a": "bm25"}, datasets=["demo"], dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(ConfigError, match="compare: dtype must be one of float32, bfloat16, float16"):
        CompareConfig(models={"a": "bm25"}, datasets=["demo"], dtype="fp8")
