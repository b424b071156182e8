"""The Adapter baseline of the PT2 paper (seed 000, section 4.2, appendix B.1): sequential bottleneck
adapters in Pfeiffer et al.'s placement, on tiny random encoders and through `beir-peft train`."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert, build_tiny_encoder

import beir_peft
from beir_peft import build_retriever
from beir_peft.encoders.backbone import hf_model, load_backbone
from beir_peft.encoders.sequential_adapter import OutputWithSequentialAdapter, add_sequential_adapters
from beir_peft.errors import ConfigError
from beir_peft.models.base import PASSAGE, QUERY

TEXTS = ["what causes the seasons", "the tilt of the earth's axis causes the seasons", "a short one"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny"), dropout=0.0))


def test_zero_initialised_adapters_are_exactly_the_backbone_and_the_papers_init_is_near_it(tiny):
    stock = load_backbone(tiny).encode(TEXTS, convert_to_numpy=True)
    zeros = build_retriever("adapter", tiny, adapter_init="zeros")
    np.testing.assert_array_equal(zeros.encode(TEXTS, side=QUERY), stock)
    torch.manual_seed(0)
    bert = build_retriever("adapter", tiny)  # N(0, 0.02): adapter-transformers 2.2's, the paper's
    moved = bert.encode(TEXTS, side=QUERY)
    assert not np.array_equal(moved, stock) and np.allclose(moved, stock, atol=0.05)
    torch.manual_seed(0)
    np.testing.assert_array_equal(build_retriever("adapter", tiny).encode(TEXTS, side=QUERY), moved)  # seeded


def test_only_the_adapters_train_with_a_bottleneck_of_a_sixteenth(tiny):
    model = build_retriever("adapter", tiny)
    names = [n for n, p in model.module.named_parameters() if p.requires_grad]
    assert names and all(".sequential_adapter." in n for n in names)
    hidden, bottleneck = 32, 32 // 16
    per_layer = hidden * bottleneck + bottleneck + bottleneck * hidden + hidden  # down and up, with biases
    assert model.trainable_parameter_count() == 2 * per_layer  # 2 layers
    wider = build_retriever("adapter", tiny, adapter_reduction_factor=4)
    assert wider.trainable_parameter_count() == 2 * (2 * 32 * 8 + 8 + 32)


def test_the_layer_computes_pfeiffers_placement(tiny):
    """LayerNorm(s + up(relu(down(LayerNorm(s))))), s the feed-forward output plus its input: with
    zero adapter output it is the layer itself (adapter-transformers' residual_before_ln,
    original_ln_before and original_ln_after)."""
    torch.manual_seed(0)
    model = hf_model(load_backbone(tiny))
    add_sequential_adapters(model)
    block = model.encoder.layer[0].output
    assert isinstance(block, OutputWithSequentialAdapter)
    with torch.no_grad():
        block.sequential_adapter.up.weight.normal_()
        hidden, residual = torch.randn(3, 5, 37), torch.randn(3, 5, 32)
        summed = block.dense(hidden) + residual
        normed = block.LayerNorm(summed)
        adapter = block.sequential_adapter
        expected = block.LayerNorm(summed + adapter.up(torch.relu(adapter.down(normed))))
        torch.testing.assert_close(block.eval()(hidden, residual), expected)


def test_training_moves_it_and_the_folder_reloads_strictly(tiny, tmp_path):
    from beir_peft.cli import main

    out = tmp_path / "adapter"
    args = ["train", "adapter", "--backbone", tiny, "--max-steps", "2", "--lr", "1e-2", "-o", str(out), "-q"]
    assert main(args) == 0
    loaded = beir_peft.load(out)
    assert loaded.method == "adapter" and loaded.config.adapter_init == "bert"
    untrained = build_retriever("adapter", tiny, adapter_init="zeros")
    assert not np.allclose(
        loaded.encode(TEXTS, side=PASSAGE), untrained.encode(TEXTS, side=PASSAGE), atol=1e-3
    )
    np.testing.assert_array_equal(
        beir_peft.load(out).encode(TEXTS, side=QUERY), loaded.encode(TEXTS, side=QUERY)
    )


@pytest.mark.parametrize("family", ["roberta", "mpnet", "electra"])
def test_bert_style_encoders_take_adapters(family, tmp_path):
    backbone = str(build_tiny_encoder(tmp_path, family))
    stock = load_backbone(backbone).encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(
        build_retriever("adapter", backbone, adapter_init="zeros").encode(TEXTS, side=QUERY), stock, atol=1e-6
    )


def test_an_encoder_without_bert_style_blocks_and_bad_options_are_refused(tmp_path, tiny):
    with pytest.raises(
        ConfigError, match="DistilBertModel has no BERT-style feed-forward blocks.*sequential adapters"
    ):
        build_retriever("adapter", str(build_tiny_encoder(tmp_path, "distilbert")))
    with pytest.raises(ConfigError, match="adapter_init must be one of bert, zeros"):
        build_retriever("adapter", tiny, adapter_init="normal")
    with pytest.raises(ConfigError, match="adapter_reduction_factor must be >= 1"):
        build_retriever("adapter", tiny, adapter_reduction_factor=0)
    with pytest.raises(ConfigError, match="leaves no bottleneck"):
        build_retriever("adapter", tiny, adapter_reduction_factor=64)
