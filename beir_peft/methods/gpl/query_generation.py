"""GPL stage 1: synthetic queries for target-corpus passages with a seq2seq query generator.

Wang et al. 2022 (seed 002), section 4: docT5query (``BeIR/query-gen-msmarco-t5-base-v1``, the
authors' default) with nucleus sampling, temperature 1.0, ``top_k = 25``, ``top_p = 0.95``; each
generated query's source passage is its positive. As in BEIR's generator (which GPL calls), the
input is ``title + " " + text`` truncated to the generator's input length and queries are at most
64 tokens; identical queries generated for one passage are kept once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...data import passage_text
from ...errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_GENERATOR = "BeIR/query-gen-msmarco-t5-base-v1"


@dataclass
class GenerationSettings:
    """Sampling settings (the paper's defaults)."""

    top_p: float = 0.95
    top_k: int = 25
    temperature: float = 1.0
    max_query_length: int = 64
    max_passage_length: int = 350
    batch_size: int = 32


class QueryGenerator:
    """Any Hugging Face seq2seq model that writes a query for a passage (docT5query by default).

    Args:
        model_name_or_path: hub name or local folder (loaded with ``AutoModelForSeq2SeqLM``).
        device: torch device (default: CUDA when available).
        settings: :class:`GenerationSettings`.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_GENERATOR,
        device: str | None = None,
        settings: GenerationSettings | None = None,
    ):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.name = model_name_or_path
        self.settings = settings or GenerationSettings()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path).to(self.device).eval()
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the query generator {model_name_or_path!r}: {err}") from err

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], per_passage: int, seed: int) -> list[list[str]]:
        """``per_passage`` sampled queries for each text (fewer when some are identical)."""
        s = self.settings
        torch.manual_seed(seed)
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=s.max_passage_length, return_tensors="pt"
        ).to(self.device)
        outputs = self.model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            do_sample=True,
            top_p=s.top_p,
            top_k=s.top_k,
            temperature=s.temperature,
            max_length=s.max_query_length,
            num_return_sequences=per_passage,
        )
        decoded = self.tokenizer.batch_decode(outputs, skip_special_tokens=True)
        queries = []
        for i in range(len(texts)):
            own = [q.strip() for q in decoded[i * per_passage : (i + 1) * per_passage]]
            queries.append([q for q in dict.fromkeys(own) if q])
        return queries


def generate_queries(
    generator: QueryGenerator,
    corpus: Mapping[str, Mapping[str, Any]],
    doc_ids: Sequence[str],
    per_passage: int,
    seed: int,
    first_position: int = 0,
) -> Iterator[dict[str, str]]:
    """Rows ``{"_id", "text", "doc_id"}`` for ``doc_ids`` (in order), batch by batch.

    ``doc_ids`` are the passages at positions ``first_position, first_position + 1, ...`` of the
    whole list being generated for: passage ``p``'s ``j``-th query is ``genQ{p * per_passage + j + 1}``
    and the batch starting at passage ``p`` samples with seed ``seed + p``, so generating a list in
    shards gives the same ids and, on one device, the same queries as generating it at once.
    """
    size = generator.settings.batch_size
    for start in range(0, len(doc_ids), size):
        batch = list(doc_ids[start : start + size])
        texts = [passage_text(corpus[d]) for d in batch]
        position = first_position + start
        for offset, (doc_id, queries) in enumerate(
            zip(batch, generator.generate(texts, per_passage, seed + position), strict=True)
        ):
            for j, query in enumerate(queries):
                yield {
                    "_id": f"genQ{(position + offset) * per_passage + j + 1}",
                    "text": query,
                    "doc_id": doc_id,
                }
