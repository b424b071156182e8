"""Per-method configs (beir_peft.models.configs): folders written before the split still load.

tests/data/legacy_configs/<method>.json is the config.json the code before the per-method configs
wrote for each method (every field of the family; the backbone path replaced by TINY_BACKBONE).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft.artifacts import FOLDER_METADATA
from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.models.colbert import PT2ColBERT
from beir_peft.models.configs import (
    ColBERTConfig,
    DDRConfig,
    LoRATuningConfig,
    PromptTuningConfig,
    PT2ColBERTConfig,
    PT2DPRConfig,
    TunedConfig,
    WeightTuningConfig,
)
from beir_peft.models.ddr import DDR
from beir_peft.models.tuned import PT2DPR, TunedRetriever

LEGACY = Path(__file__).parent / "data" / "legacy_configs"
CONFIG_CLASSES = {
    "pt2-dpr": PT2DPRConfig,
    "prompt": PromptTuningConfig,
    "bitfit": WeightTuningConfig,
    "lora": LoRATuningConfig,
    "ft": WeightTuningConfig,
    "ddr": DDRConfig,
    "pt2-colbert": PT2ColBERTConfig,
    "colbert-ft": ColBERTConfig,
}
COLBERT = ("pt2-colbert", "colbert-ft")
TEXTS = ["what is a prefix", "deep prompts on every layer", "a passage about retrieval"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


def _legacy(method: str, tiny: str) -> dict:
    saved = json.loads((LEGACY / f"{method}.json").read_text(encoding="utf-8"))
    return {**saved, "backbone": tiny}


def _build(method: str, fields: dict):
    if method in COLBERT:
        return PT2ColBERT(config=ColBERTConfig.from_dict(fields))
    config = TunedConfig.from_dict(fields)
    return {"pt2-dpr": PT2DPR, "ddr": DDR}.get(method, TunedRetriever)(config=config)


def _outputs(retriever) -> list[torch.Tensor]:
    if isinstance(retriever, PT2ColBERT):
        return [retriever.encode_query_tokens(TEXTS)[0], *retriever.encode_doc_token_lists(TEXTS)]
    return [torch.from_numpy(retriever.encode(TEXTS, side=side)) for side in ("query", "passage")]


@pytest.mark.parametrize("method", list(CONFIG_CLASSES))
def test_a_folder_written_before_the_split_loads(method, tiny, tmp_path):
    legacy = _legacy(method, tiny)
    fields = {k: v for k, v in legacy.items() if k not in FOLDER_METADATA}
    torch.manual_seed(0)
    model = _build(method, fields)
    with torch.no_grad():
        for parameter in model.trainable_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    assert model.config.backbone_fingerprint == legacy["backbone_fingerprint"]
    model.save(tmp_path / "m")
    # a folder as the old code wrote it: every field of the family in config.json
    (tmp_path / "m" / "config.json").write_text(json.dumps(legacy), encoding="utf-8")
    loaded = beir_peft.load(tmp_path / "m")
    assert type(loaded.config) is CONFIG_CLASSES[method] and loaded.config == model.config
    assert loaded.fingerprint() == model.fingerprint()
    for got, want in zip(_outputs(loaded), _outputs(model), strict=True):
        torch.testing.assert_close(got, want)
    # saved again, it records only the fields its method has
    loaded.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text(encoding="utf-8"))
    own = {f.name for f in dataclasses.fields(CONFIG_CLASSES[method])}
    assert set(again) - set(FOLDER_METADATA) == own and own <= set(legacy)
    assert beir_peft.load(tmp_path / "again").config == model.config


def test_an_ft_folder_does_not_record_prompt_fields(tiny):
    legacy = _legacy("ft", tiny)
    assert legacy["prefix_length"] == 32 and legacy["gate"] is True  # what the old code wrote
    config = TunedConfig.from_dict({k: v for k, v in legacy.items() if k not in FOLDER_METADATA})
    assert "prefix_length" not in config.to_dict() and "gate" not in config.to_dict()


def test_a_family_base_builds_its_methods_config():
    assert type(TunedConfig()) is PT2DPRConfig and type(ColBERTConfig()) is PT2ColBERTConfig
    lora = TunedConfig(method="lora", lora_r=4, gate=False)  # gate: a field of another method, dropped
    assert type(lora) is LoRATuningConfig and lora.lora_r == 4 and not hasattr(lora, "gate")
    assert type(ColBERTConfig(method="colbert-ft", prefix_length=3)) is ColBERTConfig
    assert PT2ColBERTConfig().prefix_length == 64 and PT2DPRConfig().prefix_length == 32
    assert dataclasses.replace(lora, lora_r=2).lora_r == 2


def test_fields_unknown_to_the_family_are_refused(tiny):
    with pytest.raises(ConfigError, match="unknown method"):
        TunedConfig(method="prefix")
    with pytest.raises(TypeError):
        TunedConfig(method="ft", prefix_lenght=3)
    with pytest.raises(ArtifactError, match="unknown field"):
        TunedConfig.from_dict({"method": "ft", "backbone": tiny, "dimension": 3})
    with pytest.raises(ConfigError, match="config of pt2-dpr"):
        PT2DPRConfig(method="lora")


def test_every_field_has_help_for_the_command_line():
    for config_class in set(CONFIG_CLASSES.values()):
        for field in dataclasses.fields(config_class):
            assert field.metadata.get("help"), f"{config_class.__name__}.{field.name}"
