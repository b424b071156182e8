"""Tiny randomly initialised models that tests build from a config (no download, seconds to build)."""

from __future__ import annotations

from pathlib import Path

import torch


def minilm_path() -> str:
    from beir_peft.encoders.backbone import DEFAULT_BACKBONE, resolve_backbone

    return resolve_backbone(DEFAULT_BACKBONE)


def _tiny_bert_config(tokenizer, **overrides):
    """2 layers, 4 heads, 32 wide, with ``tokenizer``'s vocabulary."""
    from transformers import BertConfig

    settings = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
                "max_position_embeddings": 128}  # fmt: skip
    return BertConfig(vocab_size=tokenizer.vocab_size, **{**settings, **overrides})


def build_tiny_bert(
    folder: Path,
    seed: int = 0,
    pooling: str = "mean",
    normalize: bool = False,
    hidden: int = 32,
    dropout: float | None = None,
) -> Path:
    """A 2-layer, 4-head, ``hidden``-wide (32) BERT with the MiniLM tokenizer, saved as a
    sentence-transformers folder (``dropout``: its hidden and attention dropout; None: BERT's 0.1)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    no_dropout = (
        {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )
    config = _tiny_bert_config(tokenizer, hidden_size=hidden, **no_dropout)
    hf_dir = folder / "hf"
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    modules = [Transformer(str(hf_dir), max_seq_length=64), Pooling(hidden, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


def build_tiny_t5(folder: Path, seed: int = 0) -> Path:
    """A 1-layer, 32-wide T5 with the MiniLM (BERT) tokenizer: a randomly initialised query generator."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = T5Config(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with one relevance logit: a randomly initialised cross-encoder."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = _tiny_bert_config(tokenizer, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


#: the encoder families tests/test_architectures.py builds: transformers config and model class names
TINY_FAMILIES = {
    "bert": ("BertConfig", "BertModel"),
    "roberta": ("RobertaConfig", "RobertaModel"),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel"),
    "distilbert": ("DistilBertConfig", "DistilBertModel"),
    "electra": ("ElectraConfig", "ElectraModel"),
    "mpnet": ("MPNetConfig", "MPNetModel"),
    "modernbert": ("ModernBertConfig", "ModernBertModel"),
    "t5": ("T5Config", "T5EncoderModel"),
    "deberta-v2": ("DebertaV2Config", "DebertaV2Model"),
}


def _tiny_family_config(family: str, tokenizer):
    """2 layers (ModernBERT: 3, one of them local), 4 heads, 32 wide, ``tokenizer``'s vocabulary."""
    import transformers

    common = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id}
    bert_like = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
                 "max_position_embeddings": 128}  # fmt: skip
    settings = {
        "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37, "max_position_embeddings": 128},
        "electra": {**bert_like, "embedding_size": 32},
        "roberta": {**bert_like, "max_position_embeddings": 130},  # RoBERTa's positions start after padding
        "xlm-roberta": {**bert_like, "max_position_embeddings": 130},
        "mpnet": {**bert_like, "max_position_embeddings": 130},
        "modernbert": {**bert_like, "num_hidden_layers": 3, "local_attention": 4, "global_attn_every_n_layers": 2,
                       "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id,
                       "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id},
        "t5": {"d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4,
               "eos_token_id": tokenizer.sep_token_id},
    }.get(family, bert_like)  # fmt: skip
    return getattr(transformers, TINY_FAMILIES[family][0])(**common, **settings)


def build_tiny_encoder(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny randomly initialised ``family`` encoder (a key of :data:`TINY_FAMILIES`) with the MiniLM
    tokenizer and mean pooling, saved as a sentence-transformers folder."""
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = _tiny_family_config(family, tokenizer)
    hf_dir = folder / "hf"
    getattr(transformers, TINY_FAMILIES[family][1])(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    modules = [Transformer(str(hf_dir), max_seq_length=64), Pooling(32, pooling_mode="mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder / "st"))
    return folder / "st"


def randomise_trainable(retriever, seed: int = 0, scale: float = 1.0):
    """Seeded non-zero values for every trainable tensor of ``retriever.module`` (prefixes, gates,
    LoRA, ColBERT's linear); returns the retriever."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(retriever.module.named_parameters()):
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return retriever
