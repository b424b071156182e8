"""BEIR's dense-model interface, met once for every retriever in the package.

BEIR's searchers call ``encode_queries(queries, batch_size, **kw)`` and
``encode_corpus(corpus, batch_size, **kw)``. Exact search passes ``show_progress_bar`` and
``convert_to_tensor``; the faiss searchers pass ``normalize_embeddings`` and expect float32 numpy.
:class:`DenseRetriever` honours all three and returns float32 numpy unless a tensor is asked for.

Subclasses only say how a batch of texts becomes vectors on each side (:meth:`_encode_texts`);
batching, length sorting, devices and progress bars are sentence-transformers' own ``encode``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from ..data import passage_text
from ..errors import ConfigError
from ..registry import SINGLE_VECTOR
from .fingerprint import VectorFingerprintMixin
from .precision import EncodingPrecisionMixin

QUERY = "query"
PASSAGE = "passage"
SIDES = (QUERY, PASSAGE)


class DenseRetriever(EncodingPrecisionMixin, VectorFingerprintMixin):
    """A BEIR dense model over a sentence-transformers pipeline.

    Args:
        model: the sentence-transformers pipeline (transformer, pooling, optional normalize).
        score_function: ``"dot"`` or ``"cos_sim"``, what BEIR's searchers should rank by.
        max_seq_length: the longest input (tokens) this retriever encodes; ``None``: the pipeline's
            own. Kept on the retriever (:attr:`max_seq_length`) and applied around each
            :meth:`encode` / :meth:`tokenize` call, never written into the pipeline for good: it
            lives on the backbone's tokenizer, which every retriever on the backbone shares.

    ``fingerprint()`` (see :mod:`beir_peft.models.fingerprint`) digests every weight of
    :meth:`trainable_module` and :meth:`fingerprint_settings`; saved indexes are keyed by it.
    ``encoding_dtype`` (see :mod:`beir_peft.models.precision`) runs :meth:`encode` in bfloat16 or
    float16; what it returns is float32 whatever the dtype.
    """

    #: the method name written into saved configs; subclasses override.
    method = "sentence-transformers"
    #: how it is searched (:mod:`beir_peft.registry`): one vector per text
    retriever_kind = SINGLE_VECTOR

    def __init__(
        self, model: SentenceTransformer, score_function: str = "dot", max_seq_length: int | None = None
    ):
        if score_function not in ("dot", "cos_sim"):
            raise ConfigError(f"score_function must be 'dot' or 'cos_sim', got {score_function!r}")
        self.model = model
        self.score_function = score_function
        self.max_seq_length = int(max_seq_length) if max_seq_length is not None else None

    # ------------------------------------------------------------------ BEIR interface
    def encode_queries(
        self, queries: Sequence[str], batch_size: int = 32, **kwargs
    ) -> np.ndarray | torch.Tensor:
        """Encode queries. Returns ``(len(queries), dim)`` float32 numpy, or a tensor if asked."""
        return self.encode(list(queries), side=QUERY, batch_size=batch_size, **kwargs)

    def encode_corpus(
        self,
        corpus: Sequence[Mapping[str, Any] | str] | Mapping[str, Sequence[str]],
        batch_size: int = 32,
        **kwargs,
    ) -> np.ndarray | torch.Tensor:
        """Encode passages given as BEIR dicts (``title``/``text``), strings, or a dict of columns.

        Returns ``(len(corpus), dim)`` float32 numpy, or a tensor if asked.
        """
        if isinstance(corpus, Mapping):  # BEIR also passes {"title": [...], "text": [...]}
            titles = corpus.get("title") or [""] * len(corpus["text"])
            corpus = [{"title": t, "text": x} for t, x in zip(titles, corpus["text"], strict=True)]
        texts = [passage_text(doc) for doc in corpus]
        return self.encode(texts, side=PASSAGE, batch_size=batch_size, **kwargs)

    # ------------------------------------------------------------------ shared machinery
    def encode(
        self,
        texts: list[str],
        side: str,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        **kwargs,
    ) -> np.ndarray | torch.Tensor:
        """Encode ``texts`` on ``side`` (``"query"`` or ``"passage"``); shape ``(len(texts), dim)``."""
        if side not in SIDES:
            raise ConfigError(f"side must be one of {SIDES}, got {side!r}")
        pipeline = self.pipeline(side)
        dim = pipeline.get_embedding_dimension()
        if not texts:
            empty = torch.zeros(0, dim) if convert_to_tensor else np.zeros((0, dim), dtype=np.float32)
            return empty
        with (
            self.encoding_side(side),
            self._input_length(pipeline),
            inference_mode(self.trainable_module()),
            self.encoding_precision(),
        ):
            out = pipeline.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                convert_to_tensor=convert_to_tensor,
                normalize_embeddings=normalize_embeddings,
            )
        if convert_to_tensor:
            return out.float()
        return np.ascontiguousarray(out, dtype=np.float32)

    def pipeline(self, side: str) -> SentenceTransformer:
        """The sentence-transformers pipeline that encodes ``side`` (one shared pipeline here)."""
        return self.model

    def trainable_module(self) -> torch.nn.Module:
        """The module holding every parameter of the retriever (the pipeline itself here)."""
        return getattr(self, "module", None) or self.model

    def fingerprint_module(self) -> torch.nn.Module:
        return self.trainable_module()

    def fingerprint_settings(self) -> dict[str, Any]:
        """The score function and, per side, the pipeline's modules with their options, maximum
        input length, tokenizer and prompts: what changes the vectors besides the weights."""
        pipelines = {}
        for side in SIDES:
            pipeline = self.pipeline(side)
            with self._input_length(pipeline):  # this retriever's own length, not the shared one
                pipelines[side] = pipeline_settings(pipeline)
        return {
            **super().fingerprint_settings(),
            "score_function": self.score_function,
            "pipelines": pipelines,
        }

    @contextlib.contextmanager
    def encoding_side(self, side: str) -> Iterator[None]:
        """Context in which the pipeline encodes ``side``; the base class is symmetric."""
        yield

    @contextlib.contextmanager
    def _input_length(self, pipeline: SentenceTransformer) -> Iterator[None]:
        """``pipeline`` truncates at this retriever's :attr:`max_seq_length` inside the block; the
        shared tokenizer's own value is restored afterwards (``None``: left as it is)."""
        wanted, current = self.max_seq_length, pipeline.max_seq_length
        if wanted is None or wanted == current:
            yield
            return
        pipeline.max_seq_length = wanted
        try:
            yield
        finally:
            pipeline.max_seq_length = current

    def embed(self, features: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        """Differentiable forward of tokenised ``features``: ``(batch, dim)`` sentence embeddings."""
        with self.encoding_side(side):
            return self.pipeline(side)(features)["sentence_embedding"]

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise ``texts`` with the pipeline's tokenizer and maximum length, on the model's device."""
        with self._input_length(self.model):
            features = self.model.preprocess(texts)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in features.items()}

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> DenseRetriever:
        """Move the backbone and everything trained beside it (prompts) to ``device``."""
        self.trainable_module().to(device)
        return self

    @property
    def embedding_dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, score_function={self.score_function!r})"


def pipeline_settings(pipeline: SentenceTransformer) -> dict[str, Any]:
    """The options of a sentence-transformers pipeline that shape its vectors (not its weights)."""
    tokenizer = getattr(pipeline, "tokenizer", None)
    return {
        "modules": [
            [type(module).__name__, module.get_config_dict() if hasattr(module, "get_config_dict") else None]
            for module in pipeline
        ],
        "max_seq_length": getattr(pipeline, "max_seq_length", None),
        "do_lower_case": getattr(pipeline[0], "do_lower_case", None) if len(pipeline) else None,
        "tokenizer": [type(tokenizer).__name__, len(tokenizer) if tokenizer is not None else None],
        "prompts": getattr(pipeline, "prompts", None),
        "default_prompt_name": getattr(pipeline, "default_prompt_name", None),
    }


@contextlib.contextmanager
def inference_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode for ``module`` and its children (prompt dropout included), restored afterwards.

    sentence-transformers' ``encode`` only switches its own pipeline to eval mode; prompts and
    adapters that live beside it would otherwise keep their dropout on. Every submodule gets back
    its own mode, so a backbone shared with a retriever that is training stays in training mode.
    """
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for child, training in modes:
            child.training = training
