"""Deep prompts on the backbones users pick (issue 17, item 2): a matrix of tiny random encoders.

For every supported family: an untrained PT2-DPR (gated, text-initialised: the defaults) encodes
exactly what the backbone encodes, one training step changes the output, and a saved folder
reloads strictly to the same vectors. A family deep prompts cannot reach is refused in one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_encoder

import beir_peft
from beir_peft import PT2DPR
from beir_peft.encoders.backbone import hf_model, load_backbone
from beir_peft.encoders.deep_prompt import DeepPrompt, DeepPromptHost, _deep_prompt_attention, _PromptState
from beir_peft.encoders.mixed_prompts import RowPrompts
from beir_peft.errors import ConfigError
from beir_peft.models.base import PASSAGE, QUERY

SUPPORTED = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "modernbert", "t5"]
QUERIES = ["what causes the seasons", "who wrote hamlet", "boiling point of water", "a short one"]
PASSAGES = [
    "the tilt of the earth's axis causes the seasons",
    "hamlet is a tragedy written by william shakespeare",
    "water boils at one hundred degrees celsius at sea level",
    "short",
]


@pytest.fixture(scope="module", params=SUPPORTED)
def family_backbone(request, tmp_path_factory):
    return request.param, str(build_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param))


def _training_step(retriever) -> None:
    """One in-batch-negative (MNRL, scale 20) step of AdamW on the prompts."""
    retriever.module.train()
    optimizer = torch.optim.AdamW(retriever.trainable_parameters(), lr=0.1)
    queries = retriever.module(retriever.tokenize(QUERIES), QUERY)
    passages = retriever.module(retriever.tokenize(PASSAGES), PASSAGE)
    loss = torch.nn.functional.cross_entropy(20 * queries @ passages.T, torch.arange(len(QUERIES)))
    loss.backward()
    optimizer.step()
    retriever.module.eval()


def test_untrained_gated_prompts_are_the_backbone_train_and_round_trip(family_backbone, tmp_path):
    _check_prompts_are_the_backbone_train_and_round_trip(*family_backbone, tmp_path)


def _check_prompts_are_the_backbone_train_and_round_trip(family: str, path: str, tmp_path) -> None:
    stock = load_backbone(path).encode(QUERIES, convert_to_numpy=True)
    retriever = PT2DPR(path)
    for side in (QUERY, PASSAGE):
        np.testing.assert_allclose(retriever.encode(QUERIES, side=side), stock, atol=1e-5, err_msg=family)

    _training_step(retriever)
    trained = retriever.encode(QUERIES, side=QUERY)
    assert float(np.abs(trained - stock).max()) > 1e-4, family

    retriever.save(tmp_path / "saved")
    loaded = beir_peft.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.encode(QUERIES, side=QUERY), trained, atol=1e-6, err_msg=family)
    np.testing.assert_allclose(
        loaded.encode(PASSAGES, side=PASSAGE), retriever.encode(PASSAGES, side=PASSAGE), atol=1e-6
    )


#: the real all-mpnet-base-v2, assembled by ``bash ../shared/tools/fetch-mpnet.sh`` (a fixture, not a dependency)
REAL_MPNET = (
    Path(os.environ.get("BEIR_PEFT_FIXTURES", Path.home() / ".cache" / "beir_peft_fixtures"))
    / "all-mpnet-base-v2"
)


@pytest.mark.integration
def test_real_mpnet_untrained_prompts_are_the_backbone_train_and_round_trip(tmp_path):
    """The same checks on real weights: MPNet's relative position bias and its 768-d geometry."""
    if not (REAL_MPNET / "model.safetensors").is_file():
        pytest.skip(
            f"real all-mpnet-base-v2 not available: {REAL_MPNET} (bash ../shared/tools/fetch-mpnet.sh)"
        )
    _check_prompts_are_the_backbone_train_and_round_trip("mpnet", str(REAL_MPNET), tmp_path)


@pytest.mark.parametrize("family", ["mpnet", "t5", "modernbert", "distilbert"])
def test_mixed_rows_equal_each_prompt_alone(family, tmp_path):
    """``use_rows`` (multi-domain serving) on backbones with a position bias, rotary or no layer_idx:
    a gated, an ungated and a prompt-less row in one batch each encode what they encode alone."""
    backbone = load_backbone(str(build_tiny_encoder(tmp_path, family)))
    host = DeepPromptHost.of(hf_model(backbone))
    torch.manual_seed(1)
    gated = host.new_prompt(length=3, gate=True).eval()
    with torch.no_grad():
        gated.gate.fill_(0.5)
    ungated = host.new_prompt(length=5, gate=False, init_std=0.5).eval()
    rows = [gated, ungated, None, ungated]

    @torch.no_grad()
    def embed(texts):  # in the given row order (encode() sorts a batch by length)
        return backbone(backbone.tokenize(texts))["sentence_embedding"].numpy()

    alone = []
    for text, prompt in zip(QUERIES, rows, strict=True):
        with host.use(prompt):
            alone.append(embed([text])[0])
    with host.use_rows(RowPrompts(rows)):
        mixed = embed(QUERIES)
    np.testing.assert_allclose(mixed, np.stack(alone), atol=1e-5)
    assert float(np.abs(alone[1] - alone[2]).max()) > 1e-4  # the ungated prefix does change the row


def test_prefix_keys_get_no_position_bias():
    """Concatenated prefix (P-Tuning v2): ``softmax(q [P_k; K]^T s + [0, bias] + mask) [P_v; V]``."""
    torch.manual_seed(0)
    prompt = DeepPrompt(num_layers=1, num_heads=2, head_dim=4, length=3, dropout=0.0).eval()
    module = SimpleNamespace(
        _beir_peft_layer=0, training=False, is_causal=False, _beir_peft_prompt_state=_PromptState(prompt)
    )
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    bias = torch.randn(2, 2, 5, 5)
    mask = torch.zeros(2, 1, 1, 5)
    mask[1, ..., 3:] = torch.finfo(torch.float32).min  # the second sequence has 3 real tokens
    out, _ = _deep_prompt_attention(module, q, k, v, mask, dropout=0.0, scaling=0.5, position_bias=bias)

    keys = torch.cat([prompt.key[0].expand(2, -1, -1, -1), k], dim=2)
    values = torch.cat([prompt.value[0].expand(2, -1, -1, -1), v], dim=2)
    extra = torch.cat([torch.zeros(2, 2, 5, 3), bias + mask], dim=-1)
    expected = ((q @ keys.transpose(-1, -2)) * 0.5 + extra).softmax(-1) @ values
    torch.testing.assert_close(out, expected.transpose(1, 2).detach(), atol=1e-5, rtol=1e-5)


def test_an_encoder_deep_prompts_cannot_reach_is_refused_in_one_line(tmp_path):
    path = str(build_tiny_encoder(tmp_path, "deberta-v2"))
    with pytest.raises(ConfigError) as error:
        PT2DPR(path)
    message = str(error.value)
    assert message.startswith("DebertaV2Model computes its attention in its own forward, not through")
    assert "MPNet" in message and "\n" not in message


@pytest.mark.parametrize("family", ["t5", "modernbert"])
def test_shift_positions_is_refused_where_the_embeddings_take_no_position_ids(family, tmp_path):
    backbone = load_backbone(str(build_tiny_encoder(tmp_path, family)))
    with pytest.raises(ConfigError, match="no embeddings with position ids to shift"):
        DeepPromptHost(hf_model(backbone), shift_positions=True)


def test_an_encoder_that_shares_one_attention_module_across_layers_is_refused():
    import transformers

    config = transformers.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                       num_attention_heads=4, intermediate_size=37)  # fmt: skip
    with pytest.raises(ConfigError, match="AlbertModel shares 1 attention module.s. across its 3 layers"):
        DeepPromptHost(transformers.AlbertModel(config))
