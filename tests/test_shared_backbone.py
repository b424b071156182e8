"""Several retrievers on one backbone in memory: each encodes exactly as it would alone.

Prompt retrievers (PT2-DPR, input prompts, PT2-ColBERT) share the backbone's weights and its one
prompt host; their pooling, normalisation and input length stay their own. Weight methods, which
change the backbone, refuse to share it. Tiny random BERTs (tests/tiny_models.py), seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert

from beir_peft import PT2DPR, PT2ColBERT
from beir_peft.encoders.backbone import hf_model, load_backbone
from beir_peft.encoders.deep_prompt import DeepPromptHost
from beir_peft.errors import ConfigError
from beir_peft.models.tuned import TunedConfig, TunedRetriever

QUERIES = ["what causes the seasons?", "tilt", "proteins that bind dna in yeast cells"]
DOCS = [
    "The tilt of the Earth's axis causes the seasons.",
    "A short one!",
    "Transcription factors bind specific DNA sequences in yeast and regulate nearby genes.",
]
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


def _set_trained_part(retriever, seed: int):
    """Give every trainable tensor (prefixes, gates, ColBERT's linear) seeded non-zero values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(retriever.module.named_parameters()):
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return retriever


def _dpr(tiny, seed, backbone_model=None, **options):
    options = {"init": "random", "prefix_length": 4, **options}
    return _set_trained_part(PT2DPR(tiny, backbone_model=backbone_model, **options), seed)


def _colbert(tiny, seed, backbone_model=None, **options):
    options = {"init": "random", "prefix_length": 4, **options}
    return _set_trained_part(PT2ColBERT(tiny, backbone_model=backbone_model, **options), seed)


def _input_prompt(tiny, seed, backbone_model=None, **options):
    config = TunedConfig(method="prompt", backbone=tiny, prefix_length=3, **options)
    return _set_trained_part(TunedRetriever(config, backbone_model=backbone_model), seed)


def _dense_outputs(retriever) -> list[np.ndarray]:
    return [retriever.encode_queries(QUERIES), retriever.encode_corpus(DOCS)]


def _colbert_outputs(retriever) -> list[np.ndarray]:
    vectors, mask = retriever.encode_query_tokens(QUERIES)
    docs = retriever.encode_doc_token_lists(DOCS)
    return [vectors.numpy(), mask.numpy().astype(np.float32), *(d.numpy() for d in docs)]


def _outputs(retriever) -> list[np.ndarray]:
    return _colbert_outputs(retriever) if isinstance(retriever, PT2ColBERT) else _dense_outputs(retriever)


def _assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) <= TOLERANCE


def _assert_each_as_alone(tiny, builds) -> None:
    """``builds``: (builder, seed, options) triples; built one after another on one backbone, every
    retriever encodes what the same retriever built alone encodes, whichever encoded last."""
    alone = [_outputs(build(tiny, seed, load_backbone(tiny), **options)) for build, seed, options in builds]
    backbone = load_backbone(tiny)
    shared = [build(tiny, seed, backbone, **options) for build, seed, options in builds]
    # in build order, then in reverse: each retriever takes its turn after each other one
    turns = list(zip(shared, alone, strict=True))
    for retriever, expected in [*turns, *reversed(turns)]:
        _assert_same(_outputs(retriever), expected)


# ----------------------------------------------------------------------------- prompts take turns
def test_two_pt2dpr_on_one_backbone_each_encode_as_alone(tiny):
    _assert_each_as_alone(
        tiny, [(_dpr, 1, {}), (_dpr, 2, {"gate": False, "prefix_length": 6, "share_prompts": True})]
    )


def test_two_pt2dpr_with_their_own_pooling_each_encode_as_alone(tiny):
    _assert_each_as_alone(tiny, [(_dpr, 1, {}), (_dpr, 2, {"pooling": "cls"})])


def test_two_pt2colbert_on_one_backbone_each_encode_as_alone(tiny):
    _assert_each_as_alone(tiny, [(_colbert, 1, {}), (_colbert, 2, {"gate": False, "dim": 16})])


def test_pt2dpr_and_pt2colbert_on_one_backbone_each_encode_as_alone(tiny):
    _assert_each_as_alone(tiny, [(_dpr, 1, {"pooling": "cls"}), (_colbert, 2, {}), (_dpr, 3, {})])


def test_input_prompts_and_deep_prompts_on_one_backbone_each_encode_as_alone(tiny):
    _assert_each_as_alone(
        tiny, [(_input_prompt, 1, {}), (_dpr, 2, {}), (_input_prompt, 3, {"pooling": "cls"})]
    )


def test_the_plain_backbone_still_encodes_as_before(tiny):
    backbone = load_backbone(tiny)
    before = backbone.encode(DOCS)
    retrievers = [_dpr(tiny, 1, backbone, pooling="cls"), _colbert(tiny, 2, backbone)]
    for retriever in retrievers:
        _outputs(retriever)
    np.testing.assert_allclose(backbone.encode(DOCS), before, atol=TOLERANCE, rtol=0)
    assert backbone[1].pooling_mode == "mean"


def test_one_prompt_host_per_backbone(tiny):
    backbone = load_backbone(tiny)
    a, b, c = _dpr(tiny, 1, backbone), _dpr(tiny, 2, backbone), _colbert(tiny, 3, backbone)
    assert a._host is b._host is c._host is DeepPromptHost.of(hf_model(backbone))
    assert a.model[0] is b.model[0] is backbone[0]  # the heavy Transformer module is not copied
    with pytest.raises(ConfigError, match="already has a deep-prompt host"):
        DeepPromptHost(hf_model(backbone))


def test_encoding_with_one_leaves_the_others_training_mode(tiny):
    backbone = load_backbone(tiny)
    serving, training = _dpr(tiny, 1, backbone), _dpr(tiny, 2, backbone)
    serving.module.eval()
    training.module.train()
    serving.encode_queries(QUERIES)
    assert all(module.training for module in training.module.modules())
    assert not any(module.training for module in serving.prompts.modules())


# ----------------------------------------------------------------------------- pipeline settings
def test_pooling_stays_with_its_retriever(tiny):
    backbone = load_backbone(tiny)
    a = PT2DPR(tiny, backbone_model=backbone)
    b = PT2DPR(tiny, backbone_model=backbone, pooling="cls")
    assert a.model[1].pooling_mode == "mean" and backbone[1].pooling_mode == "mean"
    assert b.model[1].pooling_mode == "cls"


def test_normalize_stays_with_its_retriever(tiny):
    backbone = load_backbone(tiny)  # the tiny pipeline has no Normalize
    a = _dpr(tiny, 1, backbone)
    b = _dpr(tiny, 2, backbone, normalize=True)
    assert not np.allclose(np.linalg.norm(a.encode_queries(QUERIES), axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(b.encode_queries(QUERIES), axis=1), 1.0, atol=1e-5)
    assert len(backbone) == len(a.model) == 2


def test_max_seq_length_stays_with_its_retriever(tiny):
    long_docs = [" ".join(["the tilt of the axis"] * 20)]
    alone = _dpr(tiny, 2, load_backbone(tiny)).encode_corpus(long_docs)
    backbone = load_backbone(tiny)
    own_length = backbone.max_seq_length
    a = _dpr(tiny, 1, backbone, max_seq_length=8)
    b = _dpr(tiny, 2, backbone)
    a.encode_corpus(long_docs)
    assert a.tokenize(long_docs)["input_ids"].shape[1] == 8
    np.testing.assert_allclose(b.encode_corpus(long_docs), alone, atol=TOLERANCE, rtol=0)
    assert b.tokenize(long_docs)["input_ids"].shape[1] == own_length
    assert backbone.max_seq_length == own_length


# ----------------------------------------------------------------------------- refusals
def _one_line_config_error(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_a_conflicting_shift_positions_is_refused(tiny):
    backbone = load_backbone(tiny)
    _dpr(tiny, 1, backbone)
    with pytest.raises(ConfigError) as excinfo:
        _colbert(tiny, 2, backbone, shift_positions=True)
    _one_line_config_error(excinfo, "shift_positions=False", "shift_positions=True")
    _dpr(tiny, 3, backbone, shift_positions=False)  # the same setting shares


@pytest.mark.parametrize("method", ["lora", "ddr", "ft", "bitfit"])
def test_a_weight_method_refuses_a_backbone_that_serves_prompts(tiny, method):
    backbone = load_backbone(tiny)
    _dpr(tiny, 1, backbone)
    with pytest.raises(ConfigError) as excinfo:
        TunedRetriever(TunedConfig(method=method, backbone=tiny), backbone_model=backbone)
    _one_line_config_error(excinfo, method, "pt2-dpr", "separate copy")


@pytest.mark.parametrize("method", ["lora", "ddr", "ft", "bitfit"])
def test_a_backbone_with_a_weight_method_is_not_shared(tiny, method):
    backbone = load_backbone(tiny)
    first = TunedRetriever(TunedConfig(method=method, backbone=tiny), backbone_model=backbone)
    trainable = first.trainable_parameter_count()
    with pytest.raises(ConfigError) as excinfo:
        TunedRetriever(TunedConfig(method=method, backbone=tiny, lora_r=4), backbone_model=backbone)
    _one_line_config_error(excinfo, method, "separate copy")
    with pytest.raises(ConfigError):
        PT2DPR(tiny, backbone_model=backbone)
    with pytest.raises(ConfigError):
        PT2ColBERT(tiny, backbone_model=backbone)
    assert first.trainable_parameter_count() == trainable  # nothing froze or replaced its weights


def test_colbert_ft_does_not_share_a_backbone(tiny):
    backbone = load_backbone(tiny)
    _colbert(tiny, 1, backbone)
    with pytest.raises(ConfigError) as excinfo:
        PT2ColBERT(tiny, backbone_model=backbone, method="colbert-ft")
    _one_line_config_error(excinfo, "colbert-ft", "pt2-colbert")


def test_a_plain_backbone_and_two_prompt_retrievers(tiny):
    """The serving shape: the backbone itself, a PT2-DPR and a PT2-ColBERT, no adapter."""
    backbone = load_backbone(tiny)
    stock = backbone.encode(QUERIES)
    dpr = _dpr(tiny, 1, backbone)
    dpr_alone = _outputs(_dpr(tiny, 1, load_backbone(tiny)))
    colbert = _colbert(tiny, 2, backbone)
    _assert_same(_outputs(dpr), dpr_alone)
    np.testing.assert_allclose(backbone.encode(QUERIES), stock, atol=TOLERANCE, rtol=0)
    _outputs(colbert)
    np.testing.assert_allclose(backbone.encode(QUERIES), stock, atol=TOLERANCE, rtol=0)
