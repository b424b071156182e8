"""PT2-ColBERT: P-Tuning v2 deep prompts on a frozen late-interaction (ColBERT) retriever.

Tam et al. 2022 (seed 000), appendix B.2, prompt-tune ColBERT (Khattab & Zaharia 2020, *ColBERT:
Efficient and Effective Passage Search via Contextualized Late Interaction over BERT*): every token
of the query and of the document gets its own vector, and relevance is MaxSim,

    s(q, d) = sum_i max_j  E_q_i . E_d_j          (paper, equation 2)

with ``E = normalize(Linear(hidden -> 128, no bias)(last hidden states))``. The paper's setting
(appendix B.2): 32 vectors per query, 300 per document, dimension 128, prefix length 64, learning
rate 1e-2, batch 32. Faithful to the authors' code (PT-Retrieval's ``PrefixColBERT``):

* **one** encoder and **one** deep prefix shared by queries and documents, the backbone frozen, the
  prefix and the linear layer trained (``pt2-colbert``); ``colbert-ft`` is the same model with the
  whole backbone and the linear layer trained and no prefix (ColBERT's full fine-tuning);
* queries are ``[CLS] [Q] q [SEP]`` padded with ``[MASK]`` to ``query_maxlen`` (*query augmentation*);
  every one of the ``query_maxlen`` output vectors takes part in MaxSim;
* documents are ``[CLS] [D] d [SEP]`` up to ``doc_maxlen`` tokens; padding and punctuation tokens
  (a token whose string is one of ``string.punctuation``) are masked out of MaxSim.

``[Q]``/``[D]`` are ColBERT's ``[unused0]``/``[unused1]``, inserted by id after ``[CLS]`` (the
tokenizer would split the string ``"[unused0]"`` into four word pieces). BERT-vocabulary backbones
(bert-base-uncased, all-MiniLM-L6-v2, ...) have both. A tokenizer without a marker token cannot get
one without growing the frozen embedding matrix, so that marker is left out (``[CLS] q [SEP]``,
one more text token fits) and a warning says so; ``query_marker=None``/``doc_marker=None`` asks for
that explicitly.

Two details that are options because the sources differ:

* ``attend_to_mask_tokens`` (default ``False``): in ColBERT v1 and the PT-Retrieval code the
  ``[MASK]`` padding keeps attention-mask 0, so real tokens do not attend to it, while the
  ``[MASK]`` positions themselves attend to the query and produce vectors that count in MaxSim.
  ColBERTv2's ``attend_to_mask_tokens=True`` gives them attention-mask 1.
* MaxSim skips masked document tokens (``-inf`` before the max). ColBERT v1 instead multiplied them
  to zero vectors, so a masked token scored 0 and the max over a document was never below 0; the
  two agree whenever some kept token has a positive cosine, which is the usual case.
"""

from __future__ import annotations

import contextlib
import logging
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..data import passage_text
from ..encoders.backbone import (
    DEFAULT_BACKBONE,
    backbone_reference,
    hf_model,
    load_backbone,
)
from ..encoders.deep_prompt import DeepPrompt, DeepPromptHost, new_deep_prompts
from ..encoders.sharing import check_backbone_shareable, register_backbone_user
from ..errors import ConfigError
from ..registry import COLBERT, LATE_INTERACTION, methods
from ..scores import maxsim
from .base import PASSAGE, QUERY, SIDES, inference_mode
from .configs import ColBERTConfig, PT2ColBERTConfig, config_from_options
from .fingerprint import VectorFingerprintMixin
from .precision import EncodingPrecisionMixin
from .trainable import TrainableStateMixin

logger = logging.getLogger(__name__)

COLBERT_METHODS = methods(family=COLBERT)
#: word-boundary markers of BPE / sentencepiece vocabularies, stripped before the punctuation test
_BOUNDARY_MARKERS = "\u0120\u2581"  # "Ġ" (GPT-2 / RoBERTa BPE), "▁" (sentencepiece)


class PT2ColBERT(EncodingPrecisionMixin, VectorFingerprintMixin, TrainableStateMixin):
    """A ColBERT late-interaction retriever on a (frozen) sentence-transformers backbone.

    ``method="pt2-colbert"`` (default): the backbone is frozen; one deep prefix (P-Tuning v2, shared
    by queries and documents, as in the authors' code) and the ``Linear(hidden, dim, bias=False)``
    are trained (Tam et al. 2022, appendix B.2). ``method="colbert-ft"``: no prefix; the backbone
    and the linear layer are trained (Khattab & Zaharia 2020).

    ``retriever.module`` is the ``nn.Module`` owning every parameter (backbone, prefix, linear);
    ``module(features, side)`` is the differentiable forward used in training.

    ``backbone_model``: a sentence-transformers pipeline already in memory to build on. Several
    ``pt2-colbert`` and PT2-DPR retrievers can share one, each encoding exactly as it would alone:
    the prefixes take turns through the encoder's one
    :class:`~beir_peft.encoders.deep_prompt.DeepPromptHost`, and ColBERT calls the Hugging Face
    encoder itself with its own tokenisation (the pipeline's pooling, normalisation and
    ``max_seq_length`` play no part). ``colbert-ft`` trains the backbone, so it refuses a backbone
    another retriever uses and vice versa (:class:`ConfigError`; see :mod:`beir_peft.encoders.sharing`).

    Not a single-vector BEIR dense model: search it with
    :class:`beir_peft.search.maxsim.MaxSimSearch`::

        from beir.retrieval.evaluation import EvaluateRetrieval
        from beir_peft import PT2ColBERT
        from beir_peft.search.maxsim import MaxSimSearch

        model = PT2ColBERT()
        retriever = EvaluateRetrieval(MaxSimSearch(model), score_function="maxsim")
    """

    #: how it is searched (:mod:`beir_peft.registry`): token vectors scored by MaxSim
    retriever_kind = LATE_INTERACTION

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        config: ColBERTConfig | None = None,
        backbone_model=None,
        device: str | None = None,
        **options,
    ):
        if config is None:
            config = config_from_options(
                ColBERTConfig, "PT2ColBERT", options, backbone=backbone_reference(backbone)
            )
        elif options:
            raise ConfigError("pass either config or options, not both")
        model = (
            backbone_model if backbone_model is not None else load_backbone(config.backbone, device=device)
        )
        self.config = config
        self.method = config.method
        self.model = model  # the sentence-transformers pipeline (tokenizer, fingerprint)
        config.pin_backbone(model)
        self.encoder = hf_model(model)
        check_backbone_shareable(self.encoder, config.method)
        self.tokenizer = model.tokenizer
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

        self._host: DeepPromptHost | None = None
        prompt: DeepPrompt | None = None
        if isinstance(config, PT2ColBERTConfig):
            prompt = self._build_prompt()
        else:  # colbert-ft: the whole encoder but BERT's pooler head, which ColBERT never uses
            for name, parameter in self.encoder.named_parameters():
                parameter.requires_grad_(not name.startswith("pooler."))
        hidden = int(self.encoder.config.hidden_size)
        linear = nn.Linear(hidden, config.dim, bias=False)
        nn.init.normal_(linear.weight, std=float(getattr(self.encoder.config, "initializer_range", 0.02)))
        self.module = _ColBERTModule(self, self.encoder, prompt, linear.to(self.device))

        self._set_up_tokens()
        register_backbone_user(self.encoder, config.method)

    # ------------------------------------------------------------------ construction
    def _build_prompt(self) -> DeepPrompt:
        cfg = self.config
        self._host = DeepPromptHost.of(self.encoder, shift_positions=cfg.shift_positions)
        (prompt,) = new_deep_prompts(
            self._host, 1, self.tokenizer, max_positions=self._position_limit(), **cfg.deep_prompt_options()
        )
        return prompt.to(self.device)

    def _position_limit(self) -> int:
        """Tokens one sequence can hold: the backbone's position embeddings.

        Not the sentence-transformers ``max_seq_length`` (all-MiniLM-L6-v2: 256, a training-time
        choice that its tokenizer's ``model_max_length`` copies): the paper's 300 document tokens fit
        MiniLM's 512 positions. RoBERTa-style embeddings start positions after ``padding_idx``.
        """
        limit = int(getattr(self.encoder.config, "max_position_embeddings", 512))
        positions = getattr(getattr(self.encoder, "embeddings", None), "position_embeddings", None)
        padding_idx = getattr(positions, "padding_idx", None)
        if padding_idx is not None:
            limit -= int(padding_idx) + 1
        return limit

    def _set_up_tokens(self) -> None:
        cfg, tok = self.config, self.tokenizer
        vocab = tok.get_vocab()

        def marker_id(marker: str | None, side: str) -> int | None:
            if marker is None:
                return None
            if marker not in vocab:
                logger.warning(
                    "the tokenizer of %s has no %r token: %s are encoded without a marker",
                    cfg.backbone,
                    marker,
                    side,
                )
                return None
            return int(vocab[marker])

        self.query_marker_id = marker_id(cfg.query_marker, "queries")
        self.doc_marker_id = marker_id(cfg.doc_marker, "documents")
        for name in ("cls_token_id", "sep_token_id", "pad_token_id"):
            if getattr(tok, name) is None:
                raise ConfigError(f"the tokenizer of {cfg.backbone} has no {name.removesuffix('_id')} token")
        if cfg.query_augmentation and tok.mask_token_id is None:
            raise ConfigError(
                f"query_augmentation needs a [MASK] token; the tokenizer of {cfg.backbone} has none"
            )

        limit = self._position_limit()
        if self._host is not None and cfg.shift_positions:
            limit -= cfg.prefix_length  # real tokens start at position prefix_length
        if cfg.query_maxlen > limit:
            raise ConfigError(f"query_maxlen {cfg.query_maxlen} exceeds the backbone's {limit} positions")
        self.query_maxlen = cfg.query_maxlen
        self.doc_maxlen = min(cfg.doc_maxlen, limit)
        if self.doc_maxlen < cfg.doc_maxlen:
            logger.info(
                "doc_maxlen %d capped at %d, the backbone's position limit", cfg.doc_maxlen, self.doc_maxlen
            )

        skip: set[int] = set()
        if cfg.mask_punctuation:
            punctuation = set(string.punctuation)
            for token, index in vocab.items():
                bare = token[1:] if token[:1] and token[0] in _BOUNDARY_MARKERS else token
                if bare in punctuation:
                    skip.add(int(index))
        special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id}
        self._skip_ids = torch.tensor(sorted(skip - special), dtype=torch.long)

    # ------------------------------------------------------------------ tokenisation
    def _token_ids(self, texts: Sequence[str], side: str) -> list[list[int]]:
        """``[CLS] marker text [SEP]`` ids per text, truncated to the side's maximum length."""
        marker = self.query_marker_id if side == QUERY else self.doc_marker_id
        maxlen = self.query_maxlen if side == QUERY else self.doc_maxlen
        room = maxlen - 2 - (marker is not None)
        bodies = self.tokenizer(
            [t if t is not None else "" for t in texts],
            add_special_tokens=False,
            truncation=True,
            max_length=room,
        )["input_ids"]
        head = [self.tokenizer.cls_token_id] + ([marker] if marker is not None else [])
        return [head + body + [self.tokenizer.sep_token_id] for body in bodies]

    def _collate(self, ids: Sequence[list[int]], side: str) -> dict[str, torch.Tensor]:
        """Pad id lists into model inputs: queries to ``query_maxlen`` ([MASK] with augmentation), docs to the longest."""
        tok = self.tokenizer
        augment = side == QUERY and self.config.query_augmentation
        length = self.query_maxlen if side == QUERY else max(len(x) for x in ids)
        pad_id = tok.mask_token_id if augment else tok.pad_token_id
        input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), length), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            attention[row, : len(x)] = 1
        if augment and self.config.attend_to_mask_tokens:
            attention.fill_(1)
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention.to(self.device),
            "token_type_ids": torch.zeros_like(input_ids).to(self.device),
        }

    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for queries: ``(n, query_maxlen)`` ids ``[CLS] [Q] q [SEP] [MASK]...``, on the device."""
        return self._collate(self._token_ids(list(texts), QUERY), QUERY)

    def tokenize_docs(self, texts: Sequence[str | Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Model inputs for documents (strings or BEIR dicts): ``[CLS] [D] d [SEP]`` padded to the longest."""
        return self._collate(self._token_ids([passage_text(t) for t in texts], PASSAGE), PASSAGE)

    # ------------------------------------------------------------------ differentiable forward
    @contextlib.contextmanager
    def encoding_side(self, side: str) -> Iterator[None]:
        """The shared prefix is active on both sides (one prompt, as in the authors' code)."""
        if side not in SIDES:
            raise ConfigError(f"side must be one of {SIDES}, got {side!r}")
        if self._host is None:
            yield
            return
        with self._host.use(self.module.prompt):
            yield

    def _token_vectors(self, features: Mapping[str, torch.Tensor], side: str) -> torch.Tensor:
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        with self.encoding_side(side):
            hidden = self.encoder(**inputs).last_hidden_state
        return nn.functional.normalize(self.module.linear(hidden), p=2, dim=-1)

    def embed_queries(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vectors (n, query_maxlen, dim), mask (n, query_maxlen) bool)``, differentiable.

        With query augmentation every position (the ``[MASK]`` padding included) counts in MaxSim;
        without it only the real tokens do.
        """
        vectors = self._token_vectors(features, QUERY)
        if self.config.query_augmentation:
            mask = torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)
        else:
            mask = features["attention_mask"].bool()
        return vectors, mask

    def embed_docs(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vectors (n, L, dim), mask (n, L) bool)``, differentiable; padding and punctuation masked.

        Masked positions hold zero vectors (ColBERT v1 zeroes them too).
        """
        vectors = self._token_vectors(features, PASSAGE)
        mask = self.doc_mask(features)
        return vectors * mask.unsqueeze(-1).to(vectors.dtype), mask

    def doc_mask(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Which document tokens are vectors: attended and (``mask_punctuation``) not punctuation."""
        ids = features["input_ids"]
        mask = features["attention_mask"].bool()
        if self._skip_ids.numel():
            mask = mask & ~torch.isin(ids, self._skip_ids.to(ids.device))
        return mask

    def score(
        self,
        q_vectors: torch.Tensor,
        q_mask: torch.Tensor | None,
        d_vectors: torch.Tensor,
        d_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """MaxSim of every query against every document, ``(n_queries, n_docs)``; see :func:`maxsim`."""
        return maxsim(q_vectors, q_mask, d_vectors, d_mask)

    # ------------------------------------------------------------------ inference
    def encode_query_tokens(
        self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query token vectors: ``(float32 (n, query_maxlen, dim), bool mask (n, query_maxlen))`` on CPU."""
        texts = list(texts)
        dim = self.config.dim
        if not texts:
            return torch.zeros(0, self.query_maxlen, dim), torch.zeros(0, self.query_maxlen, dtype=torch.bool)
        ids = self._token_ids(texts, QUERY)
        vectors, masks = [], []
        with self._eval():
            for start in _progress(range(0, len(ids), batch_size), show_progress_bar, "Encoding queries"):
                q, m = self.embed_queries(self._collate(ids[start : start + batch_size], QUERY))
                vectors.append(q.float().cpu())
                masks.append(m.cpu())
        return torch.cat(vectors), torch.cat(masks)

    def encode_doc_token_lists(
        self,
        texts: Sequence[str | Mapping[str, Any]],
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> list[torch.Tensor]:
        """Per document, its kept token vectors ``(n_i, dim)`` float32 on CPU (ColBERT's ``keep_dims=False``).

        Documents are batched longest first (less padding) and returned in input order.
        """
        texts = list(texts)
        if not texts:
            return []
        ids = self._token_ids([passage_text(t) for t in texts], PASSAGE)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[torch.Tensor | None] = [None] * len(ids)
        with self._eval():
            for start in _progress(range(0, len(order), batch_size), show_progress_bar, "Encoding documents"):
                batch = order[start : start + batch_size]
                d, m = self.embed_docs(self._collate([ids[i] for i in batch], PASSAGE))
                d, m = d.float().cpu(), m.cpu()
                for row, index in enumerate(batch):
                    out[index] = d[row][m[row]]
        return out  # type: ignore[return-value]

    def encode_doc_tokens(
        self,
        texts: Sequence[str | Mapping[str, Any]],
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Document token vectors padded to the longest: ``(float32 (n, L, dim), bool mask (n, L))`` on CPU.

        Punctuation (``mask_punctuation``) and padding are removed; the kept vectors come first in
        each row and the rest of the row is zero with mask ``False``.
        """
        lists = self.encode_doc_token_lists(texts, batch_size, show_progress_bar)
        length = max((len(x) for x in lists), default=0)
        vectors = torch.zeros(len(lists), length, self.config.dim)
        mask = torch.zeros(len(lists), length, dtype=torch.bool)
        for row, x in enumerate(lists):
            vectors[row, : len(x)] = x
            mask[row, : len(x)] = True
        return vectors, mask

    @contextlib.contextmanager
    def _eval(self) -> Iterator[None]:
        """Eval mode (prefix dropout off), no autograd and the :attr:`encoding_dtype`, restored afterwards."""
        with inference_mode(self.module), torch.no_grad(), self.encoding_precision():
            yield

    # ------------------------------------------------------------------ identity
    def fingerprint_settings(self) -> dict[str, Any]:
        """Every config field (tokenisation, lengths, markers, prefix options); the weights are the
        module's, the prefix, the linear layer and the backbone (see :mod:`beir_peft.models.fingerprint`)."""
        return {**super().fingerprint_settings(), "config": self.config.to_dict()}

    # ------------------------------------------------------------------ misc
    @property
    def score_function(self) -> str:
        return "maxsim"

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: str | torch.device) -> PT2ColBERT:
        self.module.to(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, backbone={self.config.backbone!r})"


class _ColBERTModule(nn.Module):
    """The retriever as one ``nn.Module``: ``forward(features, side) -> (vectors, mask)``.

    Owns the encoder (``backbone``), the shared prefix (``prompt``, absent for colbert-ft) and the
    ``linear`` projection, so that an optimizer and accelerate see every parameter.
    """

    def __init__(
        self, retriever: PT2ColBERT, backbone: nn.Module, prompt: DeepPrompt | None, linear: nn.Linear
    ):
        super().__init__()
        self.backbone = backbone
        self.prompt = prompt
        self.linear = linear
        self._retriever = [retriever]  # a list, so nn.Module does not register a cycle

    def forward(self, features: dict[str, torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        retriever = self._retriever[0]
        if side not in SIDES:
            raise ConfigError(f"side must be one of {SIDES}, got {side!r}")
        return retriever.embed_queries(features) if side == QUERY else retriever.embed_docs(features)


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)


__all__ = ["COLBERT_METHODS", "ColBERTConfig", "PT2ColBERT", "maxsim"]
