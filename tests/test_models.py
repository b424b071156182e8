"""PT2-DPR and the comparison variants on a tiny random BERT: what trains, what changes, what loads."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import PT2DPR, build_retriever
from beir_peft.encoders.backbone import load_backbone
from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.models.base import PASSAGE, QUERY

TEXTS = ["what causes the seasons", "the tilt of the earth's axis causes the seasons", "a short one"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("other"), seed=1))


def stock(path):
    return load_backbone(path).encode(TEXTS, convert_to_numpy=True)


def test_gated_prompt_starts_exactly_at_the_backbone(tiny):
    model = PT2DPR(tiny)
    for side in (QUERY, PASSAGE):
        np.testing.assert_allclose(model.encode(TEXTS, side=side), stock(tiny), atol=1e-6)


@pytest.mark.parametrize(
    "options", [{"gate": False}, {"gate": False, "init": "random"}, {"projection": True, "gate": False}]
)
def test_prefix_changes_outputs(tiny, options):
    model = PT2DPR(tiny, **options)
    assert not np.allclose(model.encode(TEXTS, side=QUERY), stock(tiny), atol=1e-4)


def test_query_and_passage_prompts_differ_unless_shared(tiny):
    torch.manual_seed(0)
    model = PT2DPR(tiny, gate=False, init="random")
    assert not np.allclose(model.encode(TEXTS, side=QUERY), model.encode(TEXTS, side=PASSAGE), atol=1e-4)
    shared = PT2DPR(tiny, gate=False, init="random", share_prompts=True)
    np.testing.assert_allclose(
        shared.encode(TEXTS, side=QUERY), shared.encode(TEXTS, side=PASSAGE), atol=1e-6
    )
    assert shared.trainable_parameter_count() * 2 == model.trainable_parameter_count()


def test_only_prefix_parameters_get_gradients(tiny):
    model = PT2DPR(tiny, gate=True)
    model.module.train()
    query = model.embed(model.tokenize(TEXTS[:1]), QUERY)
    passage = model.embed(model.tokenize(TEXTS[1:2]), PASSAGE)
    (query * passage).sum().backward()
    with_grad = {
        n for n, p in model.module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert with_grad and all(n.startswith("prompts.") for n in with_grad)
    assert any(n.endswith("gate") for n in with_grad)  # the zero gate is what starts learning
    frozen = [p for n, p in model.module.named_parameters() if not n.startswith("prompts.")]
    assert all(not p.requires_grad and p.grad is None for p in frozen)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (
            "pt2-dpr",
            2 * (2 * 4 * 32 * 8 * 2) + 2 * 2 * 4,
        ),  # 2 sides x (layers x heads x len x head_dim x k/v) + gates
        ("prompt", 2 * 32 * 32),  # 2 sides x len x hidden
        ("ft", None),
    ],
)
def test_trainable_parameter_counts(tiny, method, expected):
    model = build_retriever(method, tiny)
    if expected is None:  # every backbone weight but BERT's pooler, which mean/cls pooling never uses
        expected = sum(p.numel() for n, p in model.module.backbone.named_parameters() if ".pooler." not in n)
    assert model.trainable_parameter_count() == expected


def test_bitfit_and_lora_train_only_their_parameters(tiny):
    bitfit = build_retriever("bitfit", tiny)
    assert all(n.endswith(".bias") for n, p in bitfit.module.named_parameters() if p.requires_grad)
    lora = build_retriever("lora", tiny, lora_r=4)
    names = [n for n, p in lora.module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert lora.trainable_parameter_count() == 2 * 2 * (4 * 32 + 32 * 4)  # layers x {query,value} x (A + B)


@pytest.mark.parametrize("method", ["pt2-dpr", "prompt", "bitfit", "lora", "adapter", "ft"])
def test_save_load_round_trip_is_exact(tiny, tmp_path, method):
    torch.manual_seed(0)
    model = build_retriever(
        method, tiny, **({"gate": False, "init": "random"} if method == "pt2-dpr" else {})
    )
    with torch.no_grad():  # move every trainable tensor away from its initial value
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save(tmp_path / "m")
    loaded = beir_peft.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.method == method
    for side in (QUERY, PASSAGE):
        np.testing.assert_array_equal(loaded.encode(TEXTS, side=side), model.encode(TEXTS, side=side))
    saved = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert set(saved) == set(model.trainable_state_dict())
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["method"] == method and config["trainable_parameters"] == model.trainable_parameter_count()
    assert "versions" in config and (tmp_path / "m" / "README.md").read_text().startswith(
        "# beir_peft retriever"
    )


@pytest.mark.parametrize("method", ["ft", "lora", "bitfit", "adapter"])
def test_separate_encoders_train_one_copy_per_side(tiny, tmp_path, method):
    # the paper's adapters start at random, one draw per copy: start them at zero to compare the copies
    options = {"adapter_init": "zeros"} if method == "adapter" else {}
    shared = build_retriever(method, tiny, **options)
    model = build_retriever(method, tiny, separate_encoders=True, **options)
    assert model.trainable_parameter_count() == 2 * shared.trainable_parameter_count()
    np.testing.assert_allclose(  # both copies start as the backbone
        model.encode(TEXTS, side=QUERY), model.encode(TEXTS, side=PASSAGE), rtol=1e-5, atol=1e-6
    )
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if p.requires_grad and name.startswith("passage_backbone."):
                p.add_(torch.randn_like(p) * 0.05)
    assert not np.allclose(model.encode(TEXTS, side=QUERY), model.encode(TEXTS, side=PASSAGE))
    np.testing.assert_allclose(
        model.encode(TEXTS, side=QUERY), shared.encode(TEXTS, side=QUERY), rtol=1e-5, atol=1e-6
    )
    model.save(tmp_path / "m")
    loaded = beir_peft.load(tmp_path / "m")
    for side in (QUERY, PASSAGE):
        np.testing.assert_array_equal(loaded.encode(TEXTS, side=side), model.encode(TEXTS, side=side))
    with pytest.raises(ConfigError, match="separate_encoders"):
        build_retriever("pt2-dpr", tiny, separate_encoders=True)


def test_options(tiny):
    model = PT2DPR(tiny, prefix_length=5, pooling="cls", shift_positions=True, prefix_dropout=0.0)
    assert model.prompts[QUERY].key.shape == (2, 4, 5, 8)
    assert model.encode(TEXTS, side=QUERY).shape == (3, 32)
    with pytest.raises(ConfigError, match="unknown option"):
        PT2DPR(tiny, prefix_lenght=5)
    with pytest.raises(ConfigError, match="pooling"):
        PT2DPR(tiny, pooling="max")
    with pytest.raises(ConfigError, match="prefix length"):
        PT2DPR(tiny, prefix_length=0)
    with pytest.raises(ConfigError, match="unknown method"):
        build_retriever("prefix", tiny)


def test_encode_interface(tiny):
    model = PT2DPR(tiny)
    out = model.encode_queries(["one query"], batch_size=2)
    assert out.dtype == np.float32 and out.shape == (1, 32)
    tensor = model.encode_corpus(
        [{"title": None, "text": "t"}, {"text": "u"}], batch_size=2, convert_to_tensor=True
    )
    assert torch.is_tensor(tensor) and tensor.shape == (2, 32)
    normed = model.encode_corpus(
        {"title": ["a", "b"], "text": ["x", "y"]}, batch_size=2, normalize_embeddings=True
    )
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert model.encode_queries([], batch_size=2).shape == (0, 32)


# ----------------------------------------------------------------------------- strict loading
@pytest.fixture
def saved(tiny, tmp_path):
    model = PT2DPR(tiny)
    model.save(tmp_path / "m")
    return tmp_path / "m"


def test_load_refuses_a_prefix_for_another_backbone(saved, other_tiny):
    config = json.loads((saved / "config.json").read_text())
    config["backbone"] = other_tiny  # same shapes, different weights
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="backbone"):
        beir_peft.load(saved)


def test_load_refuses_wrong_shapes_and_names(saved):
    weights = load_file(str(saved / "weights.safetensors"))
    name = next(n for n in weights if n.endswith("key"))
    save_file({**weights, name: weights[name][:, :, :3].contiguous()}, str(saved / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="shape"):
        beir_peft.load(saved)
    save_file({k: v for k, v in weights.items() if k != name}, str(saved / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="missing"):
        beir_peft.load(saved)
    save_file({**weights, "prompts.extra": torch.zeros(1)}, str(saved / "weights.safetensors"))
    with pytest.raises(ArtifactError, match="unexpected"):
        beir_peft.load(saved)


def test_load_refuses_a_changed_prefix_length(saved):
    config = json.loads((saved / "config.json").read_text())
    config["prefix_length"] = 7
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="shape"):
        beir_peft.load(saved)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: (p / "config.json").write_text("{not json"), "invalid JSON"),
        (lambda p: (p / "config.json").unlink(), "missing config.json"),
        (lambda p: (p / "weights.safetensors").unlink(), "missing weights"),
        (lambda p: (p / "weights.safetensors").write_bytes(b"garbage"), "unreadable"),
        (lambda p: (p / "config.json").write_text('{"method": "dpr-xl"}'), "unknown method"),
        (
            lambda p: (p / "config.json").write_text('{"method": "pt2-dpr", "prefix_lenght": 3}'),
            "unknown field",
        ),
    ],
)
def test_damaged_folders_give_one_clear_error(saved, damage, match):
    damage(saved)
    with pytest.raises(ArtifactError, match=match) as info:
        beir_peft.load(saved)
    assert "\n" not in str(info.value)


def test_load_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="no such model folder"):
        beir_peft.load(tmp_path / "absent")


def test_to_moves_prompts_with_the_backbone(tiny):
    model = PT2DPR(tiny).to("meta")
    assert {p.device.type for p in model.module.parameters()} == {"meta"}


def test_gated_attention_is_stock_attention_plus_gated_prefix_attention():
    from types import SimpleNamespace

    from beir_peft.encoders.deep_prompt import DeepPrompt, _deep_prompt_attention, _PromptState

    torch.manual_seed(0)
    prompt = DeepPrompt(num_layers=1, num_heads=2, head_dim=4, length=3, dropout=0.0, gate=True).eval()
    with torch.no_grad():
        prompt.gate.copy_(torch.tensor([[0.5, -2.0]]))
    module = SimpleNamespace(
        _beir_peft_layer=0, training=False, is_causal=False, _beir_peft_prompt_state=_PromptState(prompt)
    )
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second sequence has 3 real tokens
    out, _ = _deep_prompt_attention(module, q, k, v, mask, dropout=0.0, scaling=0.5)

    def attend(keys, values, visible):
        scores = (q @ keys.transpose(-1, -2)) * 0.5
        scores = scores.masked_fill(~visible, float("-inf")) if visible is not None else scores
        return scores.softmax(-1) @ values

    prefix = attend(prompt.key[0].expand(2, -1, -1, -1), prompt.value[0].expand(2, -1, -1, -1), None)
    expected = attend(k, v, mask) + prompt.gate[0].view(1, 2, 1, 1) * prefix  # (B, H, S, d)
    torch.testing.assert_close(out, expected.transpose(1, 2).detach(), atol=1e-5, rtol=1e-5)


def test_normalize_option_drops_or_adds_the_final_normalize(tiny, tmp_path):
    from beir_peft.encoders.backbone import normalizes

    raw = build_retriever("ft", normalize=False)  # the real all-MiniLM-L6-v2 ends with Normalize
    assert not normalizes(raw.model)
    norms = np.linalg.norm(raw.encode(TEXTS, side=QUERY), axis=1)
    assert (norms > 2).all()  # all-MiniLM-L6-v2's pooled vectors are far from unit length
    raw.save(tmp_path / "raw")
    loaded = beir_peft.load(tmp_path / "raw")
    assert loaded.config.normalize is False and not normalizes(loaded.model)
    np.testing.assert_allclose(loaded.encode(TEXTS, side=QUERY), raw.encode(TEXTS, side=QUERY), atol=1e-6)
    unit = build_retriever("ft", tiny, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit.encode(TEXTS, side=QUERY), axis=1), 1.0, atol=1e-5)
    assert build_retriever("ft", tiny).config.normalize is None  # the backbone's own pipeline


# ----------------------------------------------------------------- which encoders take deep prompts
_TINY = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 37, "max_position_embeddings": 64}  # fmt: skip


def _tiny_encoder(kind: str):
    import transformers

    config_class, model_class, extra = {
        "bert": ("BertConfig", "BertModel", {}),
        "roberta": ("RobertaConfig", "RobertaModel", {}),
        "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", {}),
        "camembert": ("CamembertConfig", "CamembertModel", {}),
        "electra": ("ElectraConfig", "ElectraModel", {"embedding_size": 32}),
        "ernie": ("ErnieConfig", "ErnieModel", {}),
        "mpnet": ("MPNetConfig", "MPNetModel", {}),
        "deberta-v2": ("DebertaV2Config", "DebertaV2Model", {}),
    }[kind]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**_TINY, **extra)
    return getattr(transformers, model_class)(config).eval()


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "mpnet"])
def test_supported_encoders_take_deep_prompts(kind):
    """Every encoder SUPPORTED_ENCODERS names really routes its attention through the prompt."""
    from beir_peft.encoders.deep_prompt import DeepPromptHost

    model = _tiny_encoder(kind)
    ids = torch.randint(5, 100, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        stock_out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        host = DeepPromptHost(model)
        prompt = host.new_prompt(length=3, gate=False).eval()
        plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
        with host.use(prompt):
            prompted = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert host.num_layers == 2
    torch.testing.assert_close(plain, stock_out)
    assert not torch.allclose(prompted, stock_out, atol=1e-4)


def test_deberta_v2_is_refused_and_not_named_as_supported():
    from beir_peft.encoders.deep_prompt import SUPPORTED_ENCODERS, DeepPromptHost

    with pytest.raises(ConfigError) as error:
        DeepPromptHost(_tiny_encoder("deberta-v2"))
    message = str(error.value)
    assert message.startswith("DebertaV2Model computes its attention in its own forward")
    supported = message.split("supported: ", 1)[1]
    assert "deberta" not in supported.lower()
    assert not any("deberta" in name.lower() for name in SUPPORTED_ENCODERS)
    assert "\n" not in message
