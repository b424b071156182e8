"""DDR: the parallel adapter, which parameters each stage trains, MLM masking statistics, merged LoRA,
strict stage folders, the CLI stages end to end, and bad input.

Tiny random BERTs built here stand in for the backbone; the real experiment is in docs/results.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import DDR
from beir_peft.cli import main
from beir_peft.data import load_corpus, load_dataset
from beir_peft.encoders.backbone import hf_model, load_backbone
from beir_peft.encoders.parallel_adapter import ParallelAdapter, add_parallel_adapters
from beir_peft.errors import ArtifactError, ConfigError
from beir_peft.methods.ddr import DAMConfig, assemble, masking_collator, read_dam, train_dam, train_rem
from beir_peft.methods.supervised import TrainingConfig
from beir_peft.models.base import PASSAGE, QUERY, passage_text
from beir_peft.training.adaptation_check import summary, warning

pytestmark = pytest.mark.usefixtures("no_network_data")
TEXTS = ["a cat sat on the mat", "vaccines train the immune system", "the stock market fell"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddr_models")
    return {"bert": str(build_tiny_bert(root / "a")), "other": str(build_tiny_bert(root / "b", seed=1))}


@pytest.fixture(scope="module")
def demo_texts():
    return [passage_text(d) for d in load_corpus(beir_peft.data.demo_dataset_path()).values()]


@pytest.fixture(scope="module")
def source_dam(tiny, demo_texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("dams") / "source"
    return train_dam(tiny["bert"], demo_texts, out, DAMConfig(steps=3, batch_size=8, learning_rate=1e-3), "demo",
                     show_progress_bar=False)  # fmt: skip


# ------------------------------------------------------------------------------- the modules
def test_parallel_adapter_starts_as_identity_and_is_added_beside_every_ffn(tiny):
    model = load_backbone(tiny["bert"])
    before = model.encode(TEXTS, convert_to_tensor=True)
    adapters = add_parallel_adapters(hf_model(model), bottleneck=6)
    assert len(adapters) == 2  # one per layer
    assert torch.allclose(model.encode(TEXTS, convert_to_tensor=True), before, atol=1e-6)
    adapter = ParallelAdapter(4, bottleneck=3, scaling=2.0)
    with torch.no_grad():
        adapter.up.weight.fill_(0.5)
    x = torch.randn(2, 4)
    expected = 2.0 * (
        torch.relu(x @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T + adapter.up.bias
    )
    assert torch.allclose(adapter(x), expected)
    with pytest.raises(ConfigError, match="no BERT-style"):
        add_parallel_adapters(torch.nn.Linear(3, 3))


def test_rem_stage_trains_only_the_rem(tiny):
    rem = DDR(tiny["bert"])
    trained = {n for n, p in rem.module.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or "parallel_adapter." in n for n in trained)
    assert any("lora_" in n for n in trained) and any("parallel_adapter." in n for n in trained)
    lora_only = DDR(tiny["bert"], rem_adapter=False)
    assert all("lora_" in n for n, p in lora_only.module.named_parameters() if p.requires_grad)
    adapter_only = DDR(tiny["bert"], rem_lora=False)
    assert all("parallel_adapter." in n for n, p in adapter_only.module.named_parameters() if p.requires_grad)
    # the authors' sizes: r = 192 on query/value, bottleneck 192 (tiny BERT: 2 layers, width 32)
    assert rem.trainable_parameter_count() == 2 * (
        2 * (32 * 192 + 192 * 32) + (32 * 192 + 192 + 192 * 32 + 32)
    )
    with pytest.raises(ConfigError, match="needs LoRA"):
        DDR(tiny["bert"], rem_lora=False, rem_adapter=False)


def test_merged_lora_gives_the_same_embeddings(tiny):
    torch.manual_seed(0)
    rem = DDR(tiny["bert"])
    with torch.no_grad():
        for p in rem.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    before = {side: rem.encode(TEXTS, side=side) for side in (QUERY, PASSAGE)}
    rem.merge_lora()
    assert not any("lora_" in n for n, _ in rem.module.named_parameters())  # plain Linear layers again
    for side in (QUERY, PASSAGE):
        np.testing.assert_allclose(rem.encode(TEXTS, side=side), before[side], atol=1e-5)


# ------------------------------------------------------------------------------- the DAM
def test_masking_statistics(tiny):
    tokenizer = load_backbone(tiny["bert"]).tokenizer
    ids = tokenizer(["word " * 500] * 40, truncation=True, max_length=512)["input_ids"]
    torch.manual_seed(0)
    batch = masking_collator(tokenizer, 0.15)([{"input_ids": row} for row in ids])
    original = torch.tensor(ids)
    selected = batch["labels"] != -100
    special = (original == tokenizer.cls_token_id) | (original == tokenizer.sep_token_id)
    assert not (selected & special).any()  # [CLS]/[SEP] are never masked
    assert selected.float().mean().item() == pytest.approx(0.15, abs=0.01)
    chosen = batch["input_ids"][selected]
    masked = (chosen == tokenizer.mask_token_id).float().mean().item()
    kept = (chosen == original[selected]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1, abs=0.02)
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.02)  # random tokens


def test_dam_trains_the_whole_backbone_and_reloads(tiny, source_dam, demo_texts):
    meta = read_dam(source_dam)
    assert meta["steps_done"] == 3 and meta["corpus"] == "demo"
    before, after = load_backbone(tiny["bert"]), load_backbone(str(source_dam))
    changed = [n for (n, a), (_, b) in zip(hf_model(before).named_parameters(), hf_model(after).named_parameters(),
               strict=True) if not torch.equal(a, b)]  # fmt: skip
    trained = [n for n, _ in hf_model(before).named_parameters() if not n.startswith("pooler.")]
    assert set(changed) == set(trained)  # every encoder weight moved (the unused pooler did not)
    assert (source_dam / "mlm_head.safetensors").is_file()
    # a target DAM starts from the source DAM, with its head
    target = train_dam(str(source_dam), demo_texts[:20], source_dam.parent / "target",
                       DAMConfig(steps=2, batch_size=4, learning_rate=1e-3), "demo-part", show_progress_bar=False)  # fmt: skip
    assert read_dam(target)["init"] == str(source_dam)
    with pytest.raises(ArtifactError, match="not a DAM"):
        read_dam(tiny["bert"])
    occupied = source_dam.parent / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a DAM folder"):
        train_dam(
            tiny["bert"], demo_texts, occupied, DAMConfig(steps=1, batch_size=4), show_progress_bar=False
        )
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_a_finished_dam_is_returned_only_for_its_own_settings(tiny, demo_texts, source_dam):
    made = DAMConfig(steps=3, batch_size=8, learning_rate=1e-3)  # how the source_dam fixture made it
    before = (source_dam / "dam.json").read_bytes()
    assert (
        train_dam(tiny["bert"], demo_texts, source_dam, made, "demo", show_progress_bar=False) == source_dam
    )
    with pytest.raises(
        ConfigError, match=r"dam.json: cannot resume with different settings \(steps: 3 -> 5\)"
    ):
        train_dam(tiny["bert"], demo_texts, source_dam, DAMConfig(steps=5, batch_size=8, learning_rate=1e-3), "demo",
                  show_progress_bar=False)  # fmt: skip
    with pytest.raises(ConfigError, match="corpus: 'demo' -> 'other', texts: 53 -> 3"):
        train_dam(tiny["bert"], TEXTS, source_dam, made, "other", show_progress_bar=False)
    assert (source_dam / "dam.json").read_bytes() == before


def test_the_dam_check_scores_held_out_masked_tokens_and_warns_when_the_dam_got_worse(
    tiny, demo_texts, tmp_path, caplog
):
    """Section 3.3's target stage: a target DAM from the source DAM, at a learning rate that wrecks
    the encoder (10; the paper's: 2e-5), predicts fewer held-out masked tokens than its start."""
    lines = []
    made = DAMConfig(steps=15, batch_size=8, learning_rate=2e-2)
    source = train_dam(tiny["bert"], demo_texts, tmp_path / "source", made, "demo", show_progress_bar=False,
                       echo=lines.append)  # fmt: skip
    check = read_dam(source)["adaptation_check"]
    assert (
        check["held_out_passages"] == 5
        and check["masked_tokens"] > 0
        and check["start_model"] == tiny["bert"]
    )
    assert check["better"] and check["adapted"] > check["start"] and lines == [summary(check)]
    before = (source / "dam.json").read_bytes()
    again = []  # a finished DAM: its recorded check is said again, not scored again
    assert (
        train_dam(tiny["bert"], demo_texts, source, made, "demo", show_progress_bar=False, echo=again.append)
        == source
    )
    assert again == lines and (source / "dam.json").read_bytes() == before

    with caplog.at_level("WARNING", logger="beir_peft"):
        target = train_dam(str(source), demo_texts, tmp_path / "target", DAMConfig(steps=3, batch_size=8,
                           learning_rate=10.0), "demo", show_progress_bar=False)  # fmt: skip
    check = read_dam(target)["adaptation_check"]
    assert not check["better"] and check["adapted"] < check["start"] and check["start_model"] == str(source)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [warning(check)]
    assert "teacher" not in warning(check)

    none = train_dam(tiny["bert"], demo_texts, tmp_path / "none", DAMConfig(steps=1, batch_size=8,
                     held_out_passages=0), "demo", show_progress_bar=False)  # fmt: skip
    record = read_dam(none)
    assert "adaptation_check" not in record
    del record["held_out_passages"]  # as a DAM from before the check recorded it: every text trained on
    (none / "dam.json").write_text(json.dumps(record))
    assert train_dam(tiny["bert"], demo_texts, none, DAMConfig(steps=1, batch_size=8, held_out_passages=0), "demo",
                     show_progress_bar=False) == none  # fmt: skip
    with pytest.raises(ConfigError, match="held_out_passages"):
        DAMConfig(held_out_passages=-1)


def test_dam_resumes_from_its_checkpoint(tiny, demo_texts, tmp_path, monkeypatch):
    config = DAMConfig(steps=4, batch_size=4, learning_rate=1e-3, checkpoint_every=2)
    whole = train_dam(tiny["bert"], demo_texts, tmp_path / "whole", config, show_progress_bar=False)
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def dies_at_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dies_at_third)
    with pytest.raises(KeyboardInterrupt):
        train_dam(tiny["bert"], demo_texts, tmp_path / "cut", config, show_progress_bar=False)
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    assert (tmp_path / "cut.run" / "checkpoints").is_dir() and not (tmp_path / "cut").exists()
    cut = train_dam(tiny["bert"], demo_texts, tmp_path / "cut", config, show_progress_bar=False)
    a, b = hf_model(load_backbone(str(whole))), hf_model(load_backbone(str(cut)))
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(x, y), name


# ------------------------------------------------------------------------------- REM and assembly
def test_rem_assemble_evaluate(tiny, source_dam, demo_texts, tmp_path):
    data = load_dataset("demo", split="train")
    rem = train_rem(str(source_dam), data, tmp_path / "rem", TrainingConfig(epochs=1, batch_size=4, hard_negatives=1,
                    learning_rate=1e-3, checkpoint_every=0), show_progress_bar=False)  # fmt: skip
    loaded_rem = beir_peft.load(rem)  # REM on the source DAM, no target DAM
    assert isinstance(loaded_rem, DDR) and loaded_rem.config.pooling == "mean"
    target = train_dam(str(source_dam), demo_texts, tmp_path / "target", DAMConfig(steps=2, batch_size=4),
                       show_progress_bar=False)  # fmt: skip
    out = assemble(target, rem, tmp_path / "ddr")
    served = beir_peft.load(out)
    assert served.config.merge_lora and served.config.backbone == str(target.resolve())
    assert not any("lora_" in n for n, _ in served.module.named_parameters())  # merged: no LoRA at inference
    unmerged = DDR(target, rem=rem, merge=False)
    for side in (QUERY, PASSAGE):
        np.testing.assert_allclose(
            served.encode(TEXTS, side=side), unmerged.encode(TEXTS, side=side), atol=1e-5
        )
    # the REM's bytes are stored once per domain folder: the same tensors as the REM folder
    assert (out / "weights.safetensors").stat().st_size == (rem / "weights.safetensors").stat().st_size
    data_test = load_dataset("demo")
    from beir_peft.evaluation import evaluate_retriever

    result = evaluate_retriever(served, data_test.corpus, data_test.queries, data_test.qrels, k_values=[10],
                                show_progress_bar=False)  # fmt: skip
    assert 0 <= result.metrics["NDCG@10"] <= 1
    # a backbone of the same geometry takes the REM; a non-REM folder is refused
    assemble(build_tiny_bert(tmp_path / "same", seed=3), rem, tmp_path / "ok")
    other_rem = tmp_path / "pt2"
    beir_peft.PT2DPR(tiny["bert"], prefix_length=2).save(other_rem)
    with pytest.raises(ArtifactError, match="not a DDR relevance module"):
        assemble(target, other_rem, tmp_path / "bad")


def test_local_backbones_are_recorded_as_absolute_paths(source_dam, tmp_path, monkeypatch):
    monkeypatch.chdir(source_dam.parent)
    rem = DDR(source_dam.name)  # a relative path
    assert rem.config.backbone == str(source_dam.resolve())
    rem.save(tmp_path / "rem")
    monkeypatch.chdir(tmp_path)
    assert beir_peft.load(tmp_path / "rem").config.backbone == str(source_dam.resolve())


def test_rem_on_a_different_architecture_is_refused(source_dam, tmp_path):
    rem = tmp_path / "rem"
    DDR(str(source_dam)).save(rem)
    wider = build_tiny_bert(tmp_path / "wide", hidden=48)
    with pytest.raises(ArtifactError, match="has shape"):
        assemble(wider, rem, tmp_path / "bad")


def test_cli_stages(tiny, tmp_path, capsys):
    dam = [
        "ddr",
        "dam",
        "--corpus",
        "demo",
        "--init",
        tiny["bert"],
        "--steps",
        "2",
        "--batch-size",
        "4",
        "-q",
    ]
    assert main([*dam, "-o", str(tmp_path / "src")]) == 0, capsys.readouterr().err
    check = read_dam(tmp_path / "src")["adaptation_check"]  # 5 of the demo's 53 passages held out
    assert check["held_out_passages"] == 5 and capsys.readouterr().err.count(summary(check)) == 1
    assert main(["ddr", "rem", "-d", "demo", "--dam", str(tmp_path / "src"), "-o", str(tmp_path / "rem"),
                 "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--no-adapter", "-q"]) == 0, capsys.readouterr().err  # fmt: skip
    rem_config = json.loads((tmp_path / "rem" / "config.json").read_text())
    assert rem_config["rem_adapter"] is False and rem_config["training"]["steps"] == 1
    assert main([*dam[:5], str(tmp_path / "src"), *dam[6:], "-o", str(tmp_path / "tgt")]) == 0
    assert main(["ddr", "assemble", "--dam", str(tmp_path / "tgt"), "--rem", str(tmp_path / "rem"),
                 "-o", str(tmp_path / "ddr")]) == 0  # fmt: skip
    assert main(["evaluate", "--model", str(tmp_path / "ddr"), "-q", "--k-values", "10"]) == 0
    capsys.readouterr()
    assert main(["ddr", "assemble", "--dam", str(tmp_path / "tgt"), "--rem", str(tmp_path / "nope"), "-o",
                 str(tmp_path / "x")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert main(["ddr", "dam", "--corpus", "no-such-dataset", "-o", str(tmp_path / "y"), "-q"]) == 2
    assert "Traceback" not in capsys.readouterr().err
