"""Multi-domain serving: saved folders on one backbone, mixed-domain batches in one forward each.

Every domain's rows of a mixed batch must encode what the domain's own retriever, loaded alone
with ``beir_peft.load``, encodes (max abs difference <= 1e-5, float32), on both sides. Tiny random
BERTs (tests/tiny_models.py), seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from tiny_models import build_tiny_bert, randomise_trainable

import beir_peft
from beir_peft import PT2DPR, PT2ColBERT, load_domains
from beir_peft.encoders.backbone import hf_model, load_backbone
from beir_peft.encoders.deep_prompt import DeepPromptHost
from beir_peft.encoders.mixed_prompts import RowPrompts
from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.models.tuned import TunedConfig, TunedRetriever

TOLERANCE = 1e-5
QUERIES = [
    "what causes the seasons?",
    "tilt",
    "proteins that bind dna in yeast cells",
    "how do vaccines train the immune system to recognise a virus",
    "a",
    "climate",
]
DOCS = [
    "The tilt of the Earth's axis causes the seasons.",
    "A short one!",
    "Transcription factors bind specific DNA sequences in yeast and regulate nearby genes.",
    "Vaccines expose the immune system to a harmless piece of a pathogen, so memory cells form.",
    "x",
    "Ocean currents carry heat from the equator towards the poles, shaping regional climate.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("other"), seed=1))


def _randomise(retriever, seed: int, scale: float = 1.0):
    return randomise_trainable(retriever, seed, scale)


def _save(retriever, folder) -> str:
    retriever.save(folder)
    return str(folder)


def _dpr_folder(tiny, folder, seed, **options):
    options = {"init": "random", "prefix_length": 4, **options}
    return _save(_randomise(PT2DPR(tiny, **options), seed), folder)


def _lora_folder(tiny, folder, seed, **options):
    config = TunedConfig(method="lora", backbone=tiny, **{"lora_r": 4, **options})
    return _save(_randomise(TunedRetriever(config), seed, scale=0.3), folder)


def _colbert_folder(tiny, folder, seed, **options):
    options = {"init": "random", "prefix_length": 4, "dim": 16, **options}
    return _save(_randomise(PT2ColBERT(tiny, **options), seed), folder)


def _alone(folder_or_none, tiny):
    """The domain's own retriever, loaded alone on a fresh backbone (None: the plain backbone)."""
    if folder_or_none is None:
        from beir_peft.models.loading import load_model

        return load_model(tiny)
    return beir_peft.load(folder_or_none)


def _mixed_names(names: list[str], count: int) -> list[str]:
    """Domains interleaved row by row, so every batch mixes them."""
    return [names[i % len(names)] for i in range(count)]


def _assert_mixed_equals_alone(tiny, mapping: dict, batch_size: int | None = None, **options) -> None:
    """Every row of a mixed call equals its domain's retriever alone; by default one batch holds every
    text (the server sorts by length, so smaller batches would not mix every pair of domains)."""
    served = load_domains(mapping, **options)
    names = list(mapping)
    for texts, side in ((QUERIES, "query"), (DOCS, "passage")):
        rows = _mixed_names(names, len(texts))
        encode = served.encode_queries if side == "query" else served.encode_corpus
        mixed = encode(texts, batch_size=batch_size or len(texts), domains=rows)
        assert mixed.shape[0] == len(texts)
        for name in names:
            alone = _alone(mapping[name], tiny)
            own = [i for i, row in enumerate(rows) if row == name]
            mine = [texts[i] for i in own]
            expected = alone.encode_queries(mine) if side == "query" else alone.encode_corpus(mine)
            diff = float(np.abs(mixed[own] - expected).max())
            assert diff <= TOLERANCE, f"{name} {side}: {diff}"
            # and the same domain as a BEIR dense model on its own
            single = (
                served[name].encode_queries(mine) if side == "query" else served[name].encode_corpus(mine)
            )
            assert float(np.abs(single - expected).max()) <= TOLERANCE


# ----------------------------------------------------------------------------- single-vector
def test_mixed_pt2dpr_gated_with_different_prefix_lengths_equals_each_alone(tiny, tmp_path):
    mapping = {
        "a": _dpr_folder(tiny, tmp_path / "a", 1, prefix_length=3),
        "b": _dpr_folder(tiny, tmp_path / "b", 2, prefix_length=7),
        "c": _dpr_folder(tiny, tmp_path / "c", 3, prefix_length=5, pooling="cls", normalize=True),
    }
    _assert_mixed_equals_alone(tiny, mapping)


def test_mixed_pt2dpr_ungated_with_different_prefix_lengths_equals_each_alone(tiny, tmp_path):
    mapping = {
        "a": _dpr_folder(tiny, tmp_path / "a", 1, prefix_length=2, gate=False),
        "b": _dpr_folder(tiny, tmp_path / "b", 2, prefix_length=6, gate=False, max_seq_length=8),
        "shared": _dpr_folder(tiny, tmp_path / "s", 4, prefix_length=4, gate=False, share_prompts=True),
    }
    _assert_mixed_equals_alone(tiny, mapping)


def test_mixed_gated_ungated_projection_and_plain_rows_equal_each_alone(tiny, tmp_path):
    mapping = {
        "gated": _dpr_folder(tiny, tmp_path / "g", 1, prefix_length=3),
        "ungated": _dpr_folder(tiny, tmp_path / "u", 2, prefix_length=5, gate=False),
        "mlp": _dpr_folder(tiny, tmp_path / "m", 3, prefix_length=4, projection=True, projection_hidden=8),
        "base": None,
    }
    _assert_mixed_equals_alone(tiny, mapping)


@pytest.mark.parametrize("mixing", ["gathered", "peft"])
def test_mixed_lora_domains_equal_each_alone(tiny, tmp_path, mixing):
    mapping = {
        "qv": _lora_folder(tiny, tmp_path / "qv", 1),
        "kv": _lora_folder(tiny, tmp_path / "kv", 2, lora_targets=["key", "value"], lora_alpha=8),
        "r2": _lora_folder(tiny, tmp_path / "r2", 4, lora_r=2),
        "two": _lora_folder(tiny, tmp_path / "two", 3, separate_encoders=True, pooling="cls"),
        "base": None,
    }
    _assert_mixed_equals_alone(tiny, mapping, lora_mixing=mixing)


def test_mixed_pt2dpr_lora_and_plain_backbone_equal_each_alone(tiny, tmp_path):
    mapping = {
        "pt2": _dpr_folder(tiny, tmp_path / "p", 1, prefix_length=3),
        "pt2-ungated": _dpr_folder(tiny, tmp_path / "u", 5, prefix_length=6, gate=False),
        "lora": _lora_folder(tiny, tmp_path / "l", 2),
        "base": None,
    }
    _assert_mixed_equals_alone(tiny, mapping)
    _assert_mixed_equals_alone(tiny, mapping, batch_size=4)  # batches of two or three domains


def test_mixed_rows_with_shifted_positions_equal_each_alone(tiny, tmp_path):
    mapping = {
        "a": _dpr_folder(tiny, tmp_path / "a", 1, prefix_length=3, shift_positions=True),
        "b": _dpr_folder(tiny, tmp_path / "b", 2, prefix_length=6, gate=False, shift_positions=True),
        "base": None,
    }
    _assert_mixed_equals_alone(tiny, mapping)


def test_a_mixed_batch_is_one_forward_pass(tiny, tmp_path):
    mapping = {
        "a": _dpr_folder(tiny, tmp_path / "a", 1),
        "l": _lora_folder(tiny, tmp_path / "l", 2),
        "b": None,
    }
    served = load_domains(mapping)
    calls = []
    # the encoder's forward is called directly (no hooks); its embeddings module is called once per forward
    handle = hf_model(served.backbone).embeddings.register_forward_hook(lambda *_: calls.append(1))
    try:
        served.encode_queries(QUERIES, batch_size=len(QUERIES), domains=_mixed_names(list(mapping), 6))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_outside_a_served_call_the_backbone_is_plain(tiny, tmp_path):
    """LoRA adapters injected for serving leave every other use of the backbone as it was."""
    backbone = load_backbone(tiny)
    plain = _alone(None, tiny).encode_queries(QUERIES)
    served = load_domains({"l": _lora_folder(tiny, tmp_path / "l", 2)}, backbone=backbone)
    assert served is not None
    after = backbone.encode(QUERIES, convert_to_numpy=True)
    assert float(np.abs(after - plain).max()) <= TOLERANCE


# ----------------------------------------------------------------------------- late interaction
def _colbert_alone(retriever, texts, side) -> list[np.ndarray]:
    if side == "query":
        vectors, mask = retriever.encode_query_tokens(texts)
        return [vectors[i][mask[i]].numpy() for i in range(len(texts))]
    return [d.numpy() for d in retriever.encode_doc_token_lists(texts)]


def test_mixed_pt2colbert_domains_equal_each_alone(tiny, tmp_path):
    mapping = {
        "a": _colbert_folder(tiny, tmp_path / "a", 1, prefix_length=3),
        "b": _colbert_folder(tiny, tmp_path / "b", 2, prefix_length=6, gate=False, query_maxlen=12),
        "c": _colbert_folder(tiny, tmp_path / "c", 3, query_augmentation=False, doc_maxlen=9),
    }
    served = load_domains(mapping)
    names = list(mapping)
    for texts, side in ((QUERIES, "query"), (DOCS, "passage")):
        rows = _mixed_names(names, len(texts))
        encode = served.encode_queries if side == "query" else served.encode_corpus
        mixed = encode(texts, batch_size=len(texts), domains=rows)
        for name in names:
            own = [i for i, row in enumerate(rows) if row == name]
            expected = _colbert_alone(beir_peft.load(mapping[name]), [texts[i] for i in own], side)
            for i, vectors in zip(own, expected, strict=True):
                assert mixed[i].shape == vectors.shape
                assert float(np.abs(mixed[i].numpy() - vectors).max()) <= TOLERANCE
    assert isinstance(served["a"], PT2ColBERT)


# ----------------------------------------------------------------------------- refusals
def test_a_folder_from_another_backbone_is_refused(tiny, other_tiny, tmp_path):
    ours = _dpr_folder(tiny, tmp_path / "ours", 1)
    theirs = _dpr_folder(other_tiny, tmp_path / "theirs", 2)
    with pytest.raises(ArtifactError) as info:
        load_domains({"ours": ours, "theirs": theirs})
    message = str(info.value)
    assert "theirs" in message and "\n" not in message and "different backbone" in message


def test_a_lora_folder_from_another_backbone_is_refused(tiny, other_tiny, tmp_path):
    theirs = _lora_folder(other_tiny, tmp_path / "theirs", 2)
    with pytest.raises(ArtifactError, match="theirs"):
        load_domains({"base": None, "theirs": theirs}, backbone=tiny)


def test_mixing_single_vector_and_late_interaction_is_refused(tiny, tmp_path):
    served = load_domains(
        {"dpr": _dpr_folder(tiny, tmp_path / "d", 1), "colbert": _colbert_folder(tiny, tmp_path / "c", 2)}
    )
    with pytest.raises(ConfigError, match="single-vector and late-interaction") as info:
        served.encode_queries(["a", "b"], domains=["dpr", "colbert"])
    assert "\n" not in str(info.value)


def test_unknown_domains_and_wrong_lengths_are_refused(tiny, tmp_path):
    served = load_domains({"dpr": _dpr_folder(tiny, tmp_path / "d", 1), "base": None})
    with pytest.raises(ConfigError, match="unknown domain 'nope'"):
        served.encode_queries(["a"], domains=["nope"])
    with pytest.raises(ConfigError, match="one per text"):
        served.encode_queries(["a", "b"], domains=["dpr"])
    with pytest.raises(ConfigError, match="domains= is needed"):
        served.encode_queries(["a"])


def test_a_weight_method_folder_is_refused(tiny, tmp_path):
    folder = _save(TunedRetriever(TunedConfig(method="bitfit", backbone=tiny)), tmp_path / "bitfit")
    with pytest.raises(ConfigError, match="bitfit retriever cannot be served"):
        load_domains({"b": folder})


def test_training_lora_on_a_served_backbone_is_still_refused(tiny, tmp_path):
    backbone = load_backbone(tiny)
    load_domains({"l": _lora_folder(tiny, tmp_path / "l", 2)}, backbone=backbone)
    with pytest.raises(ConfigError, match="separate copy"):
        TunedRetriever(TunedConfig(method="lora", backbone=tiny), backbone_model=backbone)


def test_row_prompts_without_any_prompt_are_the_plain_backbone(tiny):
    backbone = load_backbone(tiny)
    plain = backbone.encode(QUERIES, convert_to_numpy=True)
    host = DeepPromptHost.of(hf_model(backbone))
    with host.use_rows(RowPrompts([None] * len(QUERIES))):
        got = backbone.encode(QUERIES, convert_to_numpy=True, batch_size=len(QUERIES))
    assert float(np.abs(got - plain).max()) <= TOLERANCE


# ----------------------------------------------------------------------------- CLI: several datasets, one backbone
def _demo_copy(tmp_path, name: str) -> str:
    """The bundled demo dataset under another folder name (a second dataset to serve)."""
    import shutil

    from beir_peft.data import DEMO_DATASET, resolve_dataset

    return str(shutil.copytree(resolve_dataset(DEMO_DATASET), tmp_path / name))


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from beir_peft.cli import main

    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.usefixtures("no_network_data")
def test_cli_evaluates_several_datasets_on_one_backbone_in_one_table(tiny, tmp_path, capsys):
    import json

    first, second = _demo_copy(tmp_path, "demo-one"), _demo_copy(tmp_path, "demo-two")
    pt2 = _dpr_folder(tiny, tmp_path / "pt2", 1)
    lora = _lora_folder(tiny, tmp_path / "lora", 2)
    out = tmp_path / "served.json"
    status, table, err = _cli(
        capsys, "evaluate", "-q", "--k-values", "1,10", "--batch-size", "16", "--output", str(out),
        "--dataset", first, "--model", pt2, "--dataset", second, "--model", lora,
    )  # fmt: skip
    assert status == 0, err
    lines = table.strip().splitlines()
    assert lines[0].split() == ["dataset", "model", "NDCG@1", "NDCG@10", "Recall@1", "Recall@10"]
    assert [line.split()[0] for line in lines[1:]] == ["demo-one", "demo-two"]
    assert "2 domains on one backbone" in err
    written = json.loads(out.read_text())["datasets"]
    # each row is what the folder scores alone, evaluated the single-dataset way
    for dataset, folder in (("demo-one", pt2), ("demo-two", lora)):
        path = first if dataset == "demo-one" else second
        status, alone, err = _cli(capsys, "evaluate", "-q", "--k-values", "1,10", "--batch-size", "16",
                                  "--dataset", path, "--model", folder)  # fmt: skip
        assert status == 0, err
        ndcg10 = float(alone.splitlines()[1].split()[2])
        assert abs(written[dataset]["metrics"]["NDCG@10"] - ndcg10) <= 1e-4


@pytest.mark.usefixtures("no_network_data")
def test_cli_domains_file_with_the_plain_backbone(tiny, tmp_path, capsys):
    first, second = _demo_copy(tmp_path, "demo-one"), _demo_copy(tmp_path, "demo-two")
    _dpr_folder(tiny, tmp_path / "pt2", 1)
    domains = tmp_path / "domains.yaml"
    domains.write_text(f"domains:\n  {first}: pt2\n  {second}: null\n")
    status, table, err = _cli(capsys, "evaluate", "-q", "--k-values", "10", "--domains", str(domains))
    assert status == 0, err
    rows = table.strip().splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["demo-one", str(tmp_path / "pt2")], ["demo-two", "none"]]


@pytest.mark.usefixtures("no_network_data")
def test_cli_several_datasets_need_a_model_each(tmp_path, capsys):
    first, second = _demo_copy(tmp_path, "demo-one"), _demo_copy(tmp_path, "demo-two")
    status, _, err = _cli(
        capsys, "evaluate", "-q", "--dataset", first, "--dataset", second, "--model", "none"
    )
    assert status != 0 and "one --model per --dataset" in err and "Traceback" not in err


def test_served_domains_have_their_own_fingerprints(tiny, tmp_path):
    """Saved indexes are keyed by fingerprint: two domains never share one, a reload keeps it."""
    mapping = {
        "a": _dpr_folder(tiny, tmp_path / "a", 1),
        "l": _lora_folder(tiny, tmp_path / "l", 2),
        "b": None,
    }
    first, second = load_domains(mapping), load_domains(mapping)
    prints = {name: first[name].fingerprint() for name in mapping}
    assert len(set(prints.values())) == 3
    assert all(second[name].fingerprint() == prints[name] for name in mapping)


def test_empty_input_gives_empty_output(tiny, tmp_path):
    served = load_domains({"a": _dpr_folder(tiny, tmp_path / "a", 1)})
    assert served.encode_queries([], domains=[]).shape == (0, 32)


def test_two_servers_on_one_backbone_keep_their_own_adapters(tiny, tmp_path):
    backbone = load_backbone(tiny)
    first, second = _lora_folder(tiny, tmp_path / "l1", 1), _lora_folder(tiny, tmp_path / "l2", 2)
    servers = [load_domains({"l": folder}, backbone=backbone) for folder in (first, second)]
    for served, folder in zip(servers, (first, second), strict=True):
        expected = beir_peft.load(folder).encode_queries(QUERIES)
        assert float(np.abs(served.encode_queries(QUERIES, domains="l") - expected).max()) <= TOLERANCE
