"""Tiny randomly initialised models that tests build from a config (no download, seconds to build)."""

from __future__ import annotations

from pathlib import Path

import torch


def minilm_path() -> str:
    from beir_peft.encoders.backbone import DEFAULT_BACKBONE, resolve_backbone

    return resolve_backbone(DEFAULT_BACKBONE)


def build_tiny_bert(folder: Path, seed: int = 0, pooling: str = "mean", normalize: bool = False) -> Path:
    """A 2-layer, 4-head, 32-wide BERT with the MiniLM tokenizer, saved as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    hf_dir = folder / "hf"
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    modules = [Transformer(str(hf_dir), max_seq_length=64), Pooling(32, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"
