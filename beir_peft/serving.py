"""Multi-domain serving: many trained prompts and LoRA adapters on one frozen backbone, in mixed batches.

The deployment argument of P-Tuning v2 (Tam et al. 2022, section 1; DPTDR likewise) is that one
frozen backbone serves every domain, each adding only its prompt. :func:`load_domains` loads N
saved folders onto **one** backbone in memory and :class:`DomainServer` encodes a batch whose
texts belong to different domains in **one forward pass per batch**:

* deep prompts (``pt2-dpr``, ``pt2-colbert``): each row attends to its own domain's prefix,
  gathered per row inside the attention (:mod:`beir_peft.encoders.mixed_prompts`);
* LoRA (``lora``): each domain's adapter is injected under its own peft adapter name, and peft's
  mixed-adapter batches (``adapter_names``) pick it per row (:mod:`beir_peft.encoders.lora_router`);
* ``None``: the plain backbone (no prefix, no adapter) as one more domain.

After the shared forward, each row gets its own domain's pooling and normalisation (cheap), and
each row is tokenised at its own domain's ``max_seq_length`` (padded to the batch's longest).
Single-vector domains (PT2-DPR, LoRA, the plain backbone) mix with each other; late-interaction
domains (PT2-ColBERT) mix with each other; one call mixing the two kinds is a :class:`ConfigError`.

``served[name]`` is one domain alone: a BEIR dense model (``encode_queries`` / ``encode_corpus``)
for single-vector domains, the domain's :class:`~beir_peft.models.colbert.PT2ColBERT` (searched
with ``MaxSimSearch``) for late-interaction ones. See docs/serving.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .artifacts import FOLDER_METADATA, WEIGHTS_NAME, read_config, read_weights
from .data import passage_text
from .encoders.backbone import (
    DEFAULT_BACKBONE,
    check_backbone_fingerprint,
    hf_model,
    load_backbone,
    retriever_pipeline,
    set_normalize,
    set_pooling,
)
from .encoders.deep_prompt import DeepPrompt, DeepPromptHost
from .encoders.lora_router import BASE, LoraRouter
from .encoders.lora_router import MIXING as LORA_MIXING
from .encoders.mixed_prompts import RowPrompts
from .encoders.sharing import SERVED_LORA, check_backbone_shareable, register_backbone_user
from .errors import ArtifactError, ConfigError
from .models.base import PASSAGE, QUERY, SIDES, inference_mode, pipeline_settings
from .models.fingerprint import named_tensors, tensors_digest
from .models.precision import EncodingPrecisionMixin
from .registry import LATE_INTERACTION, SINGLE_VECTOR, method_spec, methods

logger = logging.getLogger(__name__)

#: the methods a folder may have to be served on a shared backbone, and their kind
SERVABLE_METHODS = {method: method_spec(method).kind for method in methods(servable=True)}
PLAIN_BACKBONE = "backbone"  # the method name of a ``None`` domain
#: the model of a domain that is the plain backbone, in a domains file (and ``evaluate --model``)
PLAIN_BACKBONE_MODEL = "none"
_SCORE_FUNCTIONS = {"cosine": "cos_sim", "dot": "dot"}


@dataclass
class Domain:
    """One served domain: what its rows need in a mixed batch.

    ``prompts`` / ``adapters``: per side (``"query"``, ``"passage"``), the deep prompt (or
    ``None``) and the LoRA adapter name (``"__base__"``: none). ``pipeline``: the domain's own
    sentence-transformers pipeline over the shared ``Transformer`` module (its pooling, normalize);
    ``retriever``: the PT2DPR / PT2ColBERT built on the shared backbone, when the method has one.
    """

    name: str
    folder: Path | None
    method: str
    kind: str
    score_function: str
    pipeline: Any = None
    max_seq_length: int | None = None
    prompts: dict[str, DeepPrompt | None] = field(default_factory=lambda: dict.fromkeys(SIDES))
    adapters: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SIDES, BASE))
    retriever: Any = None
    config: dict[str, Any] = field(default_factory=dict)


class DomainServer(EncodingPrecisionMixin):
    """Every domain of :func:`load_domains` on one backbone; mixed-domain batches in one forward each.

    ``encode_queries(texts, batch_size=..., domains=[...])`` and ``encode_corpus(docs, ...)`` take
    one domain name per text (or one name for all). Single-vector domains give
    ``(len(texts), dim)`` float32 (numpy, or a tensor with ``convert_to_tensor=True``);
    late-interaction domains give, per text, its kept token vectors ``(n_i, dim)`` (float32, CPU),
    as :meth:`PT2ColBERT.encode_doc_token_lists` does. ``encoding_dtype`` (``"bfloat16"`` ...) runs
    the forward passes in that dtype (:mod:`beir_peft.models.precision`); outputs stay float32.
    """

    def __init__(self, backbone, domains: Mapping[str, Domain]):
        self.backbone = backbone
        self.domains = dict(domains)
        self.encoder = hf_model(backbone)
        self._host: DeepPromptHost | None = next(
            (d.retriever._host for d in self.domains.values() if getattr(d.retriever, "_host", None)), None
        )
        router = self.encoder.__dict__.get("_beir_peft_lora_router")
        self._router: LoraRouter | None = router if router is not None and router.adapters else None
        # everything a forward touches, so that encoding can switch it to eval mode and back
        self.module = nn.ModuleList(
            [backbone] + [d.retriever.module for d in self.domains.values() if d.retriever is not None]
        )

    def fingerprint_module(self) -> nn.Module:
        """Every tensor a forward touches (what reduced-precision encoding casts)."""
        return self.module

    @property
    def lora_mixing(self) -> str | None:
        """How LoRA rows get their adapter: ``"gathered"`` or ``"peft"`` (``None``: no LoRA domain)."""
        return self._router.mixing if self._router is not None else None

    @lora_mixing.setter
    def lora_mixing(self, mixing: str) -> None:
        if mixing not in LORA_MIXING:
            raise ConfigError(f"lora_mixing must be one of {LORA_MIXING}, got {mixing!r}")
        if self._router is not None:
            self._router.mixing = mixing

    # ------------------------------------------------------------------ one domain alone
    def __getitem__(self, name: str):
        domain = self._domain(name)
        if domain.kind == LATE_INTERACTION:
            return domain.retriever
        return ServedDomain(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self.domains

    def __iter__(self) -> Iterator[str]:
        return iter(self.domains)

    def __len__(self) -> int:
        return len(self.domains)

    def kind(self, name: str) -> str:
        """``"single-vector"`` or ``"late-interaction"``."""
        return self._domain(name).kind

    # ------------------------------------------------------------------ mixed batches
    def encode_queries(self, queries: Sequence[str], batch_size: int = 32, domains=None, **kwargs):
        """Encode queries, row ``i`` with domain ``domains[i]`` (a single name: all rows)."""
        return self.encode(list(queries), QUERY, domains, batch_size=batch_size, **kwargs)

    def encode_corpus(self, corpus, batch_size: int = 32, domains=None, **kwargs):
        """Encode passages (strings, BEIR ``{"title", "text"}`` dicts, or a dict of columns)."""
        if isinstance(corpus, Mapping):  # BEIR also passes {"title": [...], "text": [...]}
            titles = corpus.get("title") or [""] * len(corpus["text"])
            corpus = [{"title": t, "text": x} for t, x in zip(titles, corpus["text"], strict=True)]
        texts = [doc if isinstance(doc, str) else passage_text(doc) for doc in corpus]
        return self.encode(texts, PASSAGE, domains, batch_size=batch_size, **kwargs)

    def encode(
        self,
        texts: Sequence[str],
        side: str,
        domains,
        batch_size: int = 32,
        convert_to_tensor: bool = False,
        show_progress_bar: bool = False,
        **_ignored,
    ):
        """Encode ``texts`` on ``side`` with one domain per text; see the class docstring for shapes."""
        if side not in SIDES:
            raise ConfigError(f"side must be one of {SIDES}, got {side!r}")
        texts = list(texts)
        names = self._row_domains(domains, len(texts))
        kinds = {self.domains[n].kind for n in names}
        if len(kinds) > 1:
            by_kind = {k: sorted({n for n in names if self.domains[n].kind == k}) for k in sorted(kinds)}
            listed = "; ".join(f"{k}: {', '.join(v)}" for k, v in by_kind.items())
            raise ConfigError(
                f"one call cannot mix single-vector and late-interaction domains ({listed}); encode them separately"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if kinds == {LATE_INTERACTION}:
            return self._encode_late(texts, side, names, batch_size, show_progress_bar)
        return self._encode_single(texts, side, names, batch_size, convert_to_tensor, show_progress_bar)

    def _domain(self, name: str) -> Domain:
        domain = self.domains.get(name)
        if domain is None:
            raise ConfigError(f"unknown domain {name!r}; served domains: {', '.join(self.domains)}")
        return domain

    def _row_domains(self, domains, count: int) -> list[str]:
        if domains is None:
            if len(self.domains) != 1:
                raise ConfigError(
                    f"domains= is needed: name the domain of each text (served: {', '.join(self.domains)})"
                )
            domains = next(iter(self.domains))
        names = [domains] * count if isinstance(domains, str) else list(domains)
        if len(names) != count:
            raise ConfigError(f"domains has {len(names)} entries for {count} texts; give one per text")
        for name in set(names):
            self._domain(name)
        return names

    @contextlib.contextmanager
    def _rows(self, side: str, batch: Sequence[Domain]) -> Iterator[None]:
        """Each row's prompt and LoRA adapter active for the forward inside the block."""
        with contextlib.ExitStack() as stack:
            if self._host is not None:
                stack.enter_context(self._host.use_rows(RowPrompts([d.prompts[side] for d in batch])))
            if self._router is not None:
                stack.enter_context(self._router.use_rows([d.adapters[side] for d in batch]))
            yield

    def _encode_single(self, texts, side, names, batch_size, convert_to_tensor, show_progress_bar):
        domains = [self.domains[n] for n in names]
        dims = {int(d.pipeline.get_embedding_dimension()) for d in domains}
        if len(dims) > 1:
            raise ConfigError(f"the domains of one call give vectors of different sizes {sorted(dims)}")
        dim = dims.pop() if dims else int(self.backbone.get_embedding_dimension())
        out = torch.zeros(len(texts), dim)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding, as ST sorts
        transformer = self.backbone[0]
        with inference_mode(self.module), torch.no_grad(), self.encoding_precision():
            for start in _progress(range(0, len(order), batch_size), show_progress_bar, "Encoding"):
                rows = order[start : start + batch_size]
                batch = [domains[i] for i in rows]
                features = self._tokenize([texts[i] for i in rows], batch)
                with self._rows(side, batch):
                    features = transformer(features)
                out[rows] = _pool_per_domain(features, batch).float().cpu()
        if convert_to_tensor:
            return out
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)

    def _tokenize(self, texts: list[str], batch: Sequence[Domain]) -> dict[str, torch.Tensor]:
        """Each row tokenised at its domain's ``max_seq_length``, padded to the batch's longest row."""
        groups: dict[int | None, list[int]] = {}
        for row, domain in enumerate(batch):
            groups.setdefault(domain.max_seq_length, []).append(row)
        parts = []
        for length, rows in groups.items():
            pipeline = batch[rows[0]].pipeline
            with _input_length(pipeline, length):
                parts.append((rows, pipeline.preprocess([texts[r] for r in rows])))
        return _pad_rows(parts, len(texts), self.backbone.tokenizer.pad_token_id, self.backbone.device)

    def _encode_late(self, texts, side, names, batch_size, show_progress_bar) -> list[torch.Tensor]:
        domains = [self.domains[n] for n in names]
        ids: list[list[int]] = [[] for _ in texts]
        by_domain: dict[str, list[int]] = {}
        for row, name in enumerate(names):
            by_domain.setdefault(name, []).append(row)
        for name, rows in by_domain.items():
            own = self.domains[name].retriever._token_ids([texts[r] for r in rows], side)
            for row, token_ids in zip(rows, own, strict=True):
                ids[row] = token_ids
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        out: list[torch.Tensor | None] = [None] * len(texts)
        with inference_mode(self.module), torch.no_grad(), self.encoding_precision():
            for start in _progress(range(0, len(order), batch_size), show_progress_bar, "Encoding"):
                rows = order[start : start + batch_size]
                batch = [domains[i] for i in rows]
                groups: dict[str, list[int]] = {}
                for position, domain in enumerate(batch):
                    groups.setdefault(domain.name, []).append(position)
                parts = [
                    (
                        positions,
                        self.domains[name].retriever._collate([ids[rows[p]] for p in positions], side),
                    )
                    for name, positions in groups.items()
                ]
                inputs = _pad_rows(
                    parts, len(rows), self.backbone.tokenizer.pad_token_id, self.backbone.device
                )
                with self._rows(side, batch):
                    hidden = self.encoder(**inputs).last_hidden_state  # (b, S, hidden)
                for (positions, features), name in zip(parts, groups, strict=True):
                    retriever = self.domains[name].retriever
                    index = torch.tensor(positions, device=hidden.device)
                    own = hidden[index, : features["input_ids"].shape[1]]
                    vectors = nn.functional.normalize(retriever.module.linear(own), p=2, dim=-1)
                    if side == QUERY:
                        mask = features["attention_mask"].bool()
                        if retriever.config.query_augmentation:  # every query position counts
                            mask = torch.ones_like(mask)
                    else:
                        mask = retriever.doc_mask(features)
                    vectors, mask = vectors.float().cpu(), mask.cpu()
                    for k, position in enumerate(positions):
                        out[rows[position]] = vectors[k][mask[k]]
        return out  # type: ignore[return-value]


class ServedDomain:
    """One single-vector domain of a :class:`DomainServer` as a BEIR dense model.

    ``encode_queries`` / ``encode_corpus`` encode through the server with every row in this
    domain (the same code path as a mixed batch), so BEIR's search scripts and
    :func:`beir_peft.evaluation.evaluate_retriever` take it as they take any retriever.
    """

    def __init__(self, server: DomainServer, name: str):
        self.server = server
        self.name = name
        self.domain = server.domains[name]
        self.score_function = self.domain.score_function
        self.method = self.domain.method
        self.retriever_kind = self.domain.kind

    def encode_queries(self, queries: Sequence[str], batch_size: int = 32, **kwargs):
        return self.server.encode_queries(queries, batch_size=batch_size, domains=self.name, **kwargs)

    def encode_corpus(self, corpus, batch_size: int = 32, **kwargs):
        return self.server.encode_corpus(corpus, batch_size=batch_size, domains=self.name, **kwargs)

    @property
    def encoding_dtype(self) -> str:
        """The server's encoding dtype (set it on the :class:`DomainServer`)."""
        return self.server.encoding_dtype

    def fingerprint(self) -> str:
        """A digest of the domain's settings, its own trained tensors and the backbone's weights
        (what keys a saved index; see :mod:`beir_peft.models.fingerprint`)."""
        domain = self.domain
        settings = {
            "class": type(self).__name__,
            "method": domain.method,
            "config": domain.config,
            "max_seq_length": domain.max_seq_length,
            "pipeline": pipeline_settings(domain.pipeline),
            **self.server.precision_settings(),
        }
        own = {name for name in domain.adapters.values() if name != BASE}
        tensors = [
            (name, tensor)
            for name, tensor in named_tensors(self.server.encoder)
            if ".lora_" not in name or any(f".{adapter}." in name for adapter in own)
        ]
        for side, prompt in domain.prompts.items():
            if prompt is not None:
                tensors += [(f"prompt.{side}.{n}", t) for n, t in named_tensors(prompt)]
        return tensors_digest(settings, tensors)

    def describe(self) -> str:
        where = f" from {self.domain.folder}" if self.domain.folder is not None else ""
        return f"domain {self.name}: {self.method}{where} (served on a shared backbone)"

    def __repr__(self) -> str:
        return f"ServedDomain({self.name!r}, method={self.method!r})"


# ---------------------------------------------------------------------------------------- loading
def load_domains(
    mapping: Mapping[str, str | Path | None],
    backbone=None,
    device: str | None = None,
    lora_mixing: str = "gathered",
) -> DomainServer:
    """Load saved retriever folders onto one backbone: ``{domain name: folder or None}``.

    ``None`` is the plain backbone. ``backbone``: a sentence-transformers pipeline already in memory,
    a name or folder, or ``None`` (the backbone named in the first folder's ``config.json``; the
    default MiniLM when every domain is ``None``). A folder trained on another backbone (its
    backbone fingerprint differs) is an :class:`ArtifactError` naming the folder; a method that
    cannot share a backbone (``ft``, ``bitfit``, ``adapter``, ``ddr``, ``prompt``, ``colbert-ft``) a
    :class:`ConfigError`. ``lora_mixing``: how LoRA rows of a mixed batch get their adapter,
    ``"gathered"`` (one batched matmul over per-row adapters) or ``"peft"`` (peft's own
    ``adapter_names`` path); see :mod:`beir_peft.encoders.lora_router`.
    """
    if lora_mixing not in LORA_MIXING:
        raise ConfigError(f"lora_mixing must be one of {LORA_MIXING}, got {lora_mixing!r}")
    if not mapping:
        raise ConfigError("load_domains needs at least one {name: folder or None} entry")
    configs: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name, folder in mapping.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"domain names must be non-empty strings, got {name!r}")
        if folder is not None:
            path = Path(folder).expanduser()
            configs[name] = (path, read_config(path))
    if backbone is None or isinstance(backbone, (str, Path)):
        reference = backbone or next((c["backbone"] for _, c in configs.values()), DEFAULT_BACKBONE)
        backbone = load_backbone(str(reference), device=device)
    elif device is not None:
        backbone.to(device)
    for path, config in configs.values():
        method = config["method"]
        if method not in SERVABLE_METHODS:
            raise ConfigError(
                f"{path}: a {method} retriever cannot be served on a shared backbone "
                f"(servable: {', '.join(SERVABLE_METHODS)}, or None for the plain backbone)"
            )
        check_backbone_fingerprint(backbone, config.get("backbone_fingerprint"), where=path)
    encoder = hf_model(backbone)
    domains: dict[str, Domain] = {}
    for name in mapping:
        if name not in configs:
            domains[name] = _plain_domain(name, backbone)
            continue
        path, config = configs[name]
        fields = {k: v for k, v in config.items() if k not in FOLDER_METADATA}
        loader = {"pt2-dpr": _prompt_domain, "lora": _lora_domain, "pt2-colbert": _colbert_domain}
        domains[name] = loader[config["method"]](name, path, fields, backbone)
    router = encoder.__dict__.get("_beir_peft_lora_router")
    if router is not None:
        router.mixing = lora_mixing
        register_backbone_user(encoder, SERVED_LORA)
    logger.info("serving %d domains on one backbone: %s", len(domains), ", ".join(domains))
    return DomainServer(backbone, domains)


def read_domains_file(path: str | Path) -> list[tuple[str, str | None]]:
    """``(dataset, folder or None)`` pairs from a YAML mapping ``dataset: folder`` (``null`` or
    ``none``: the plain backbone), optionally under ``domains:``; relative folders are relative to
    the file. ``beir-peft evaluate --domains FILE`` serves them with :func:`load_domains`."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if isinstance(data, dict) and set(data) == {"domains"}:
        data = data["domains"]
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of dataset -> trained folder (or null)")
    pairs = []
    for dataset, folder in data.items():
        if not isinstance(folder, (str, type(None))):
            raise ConfigError(
                f"{path}: the model of {dataset!r} must be a folder path or null, got {folder!r}"
            )
        if isinstance(folder, str) and folder.lower() == PLAIN_BACKBONE_MODEL:
            folder = None
        elif isinstance(folder, str) and not Path(folder).expanduser().is_absolute():
            folder = str(path.parent / folder)  # relative to the file, as compare's configs are
        pairs.append((str(dataset), folder))
    return pairs


def _plain_domain(name: str, backbone) -> Domain:
    similarity = getattr(backbone, "similarity_fn_name", None) or "cosine"
    return Domain(
        name=name,
        folder=None,
        method=PLAIN_BACKBONE,
        kind=SINGLE_VECTOR,
        score_function=_SCORE_FUNCTIONS.get(similarity, "cos_sim"),
        pipeline=retriever_pipeline(backbone),
    )


def _prompt_domain(name: str, path: Path, fields: dict[str, Any], backbone) -> Domain:
    from .models.tuned import PT2DPR, SHARED, TunedConfig

    tuned = TunedConfig.from_dict(fields, where=str(path / "config.json"))
    retriever = PT2DPR(config=dataclasses.replace(tuned, init="random"), backbone_model=backbone)
    retriever.config = tuned
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    prompts = {side: retriever.prompts[SHARED if tuned.share_prompts else side] for side in SIDES}
    return Domain(
        name=name,
        folder=path,
        method=tuned.method,
        kind=method_spec(tuned.method).kind,
        score_function=tuned.score_function,
        pipeline=retriever.model,
        max_seq_length=tuned.max_seq_length,
        prompts=prompts,
        retriever=retriever,
        config=tuned.to_dict(),
    )


def _colbert_domain(name: str, path: Path, fields: dict[str, Any], backbone) -> Domain:
    from .models.colbert import ColBERTConfig, PT2ColBERT

    colbert = ColBERTConfig.from_dict(fields, where=str(path / "config.json"))
    retriever = PT2ColBERT(config=dataclasses.replace(colbert, init="random"), backbone_model=backbone)
    retriever.config = colbert
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    return Domain(
        name=name,
        folder=path,
        method=colbert.method,
        kind=method_spec(colbert.method).kind,
        score_function="maxsim",
        prompts=dict.fromkeys(SIDES, retriever.module.prompt),
        retriever=retriever,
        config=colbert.to_dict(),
    )


def _lora_domain(name: str, path: Path, fields: dict[str, Any], backbone) -> Domain:
    """A LoRA folder's adapter (one per side with ``separate_encoders``) under its own adapter name."""
    from peft import LoraConfig

    from .models.tuned import TunedConfig

    tuned = TunedConfig.from_dict(fields, where=str(path / "config.json"))
    if tuned.merge_lora:
        raise ConfigError(f"{path}: a merged LoRA changes the backbone's weights and cannot be served shared")
    encoder = hf_model(backbone)
    check_backbone_shareable(encoder, SERVED_LORA)
    router = LoraRouter.of(encoder)
    inner = next(n for n, m in backbone.named_modules() if m is encoder)  # e.g. "0.auto_model"
    weights = read_weights(path)
    lora = LoraConfig(
        r=tuned.lora_r,
        lora_alpha=tuned.lora_alpha,
        lora_dropout=tuned.lora_dropout,
        target_modules=list(tuned.lora_targets),
    )
    owners = {QUERY: "backbone", PASSAGE: "passage_backbone" if tuned.separate_encoders else "backbone"}
    prefixes = tuple(f"{owner}.{inner}." for owner in set(owners.values()))
    unexpected = sorted(k for k in weights if not k.startswith(prefixes))
    if unexpected:
        raise ArtifactError(f"{path / WEIGHTS_NAME}: unexpected tensor {unexpected[0]} for a LoRA retriever")
    adapters = {}
    for owner in dict.fromkeys(owners.values()):
        prefix = f"{owner}.{inner}."
        state = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        # unique on the backbone, also when load_domains runs again on the same one
        adapter = f"served{len(router.adapters)}_{'passage' if owner == 'passage_backbone' else 'shared'}"
        router.add(adapter, lora, state, where=str(path / WEIGHTS_NAME))
        adapters[owner] = adapter
    pipeline = retriever_pipeline(backbone)
    set_pooling(pipeline, tuned.pooling)
    set_normalize(pipeline, tuned.normalize)
    return Domain(
        name=name,
        folder=path,
        method=tuned.method,
        kind=method_spec(tuned.method).kind,
        score_function=tuned.score_function,
        pipeline=pipeline,
        max_seq_length=tuned.max_seq_length,
        adapters={side: adapters[owner] for side, owner in owners.items()},
        config=tuned.to_dict(),
    )


# ---------------------------------------------------------------------------------------- helpers
def _pool_per_domain(features: dict[str, Any], batch: Sequence[Domain]) -> torch.Tensor:
    """Each row through its own domain's modules after the shared ``Transformer`` (pooling,
    normalize): ``(batch, dim)`` sentence embeddings."""
    groups: dict[tuple, list[int]] = {}
    for row, domain in enumerate(batch):
        groups.setdefault(_post_processing_key(domain.pipeline), []).append(row)
    out = None
    for rows in groups.values():
        index = torch.tensor(rows, device=features["token_embeddings"].device)
        own = {k: v[index] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in features.items()}
        for module in list(batch[rows[0]].pipeline)[1:]:
            own = module(own)
        embeddings = own["sentence_embedding"]
        if out is None:
            out = embeddings.new_zeros(len(batch), embeddings.shape[-1])
        out[index] = embeddings
    return out


def _post_processing_key(pipeline) -> tuple:
    """Domains whose modules after the ``Transformer`` compute alike share one key: a module with
    weights (e.g. ``Dense``) by identity, one without (``Pooling``, ``Normalize``) by its settings."""
    key = []
    for module in list(pipeline)[1:]:
        if any(True for _ in module.parameters()):
            key.append(id(module))
        else:
            config = module.get_config_dict() if hasattr(module, "get_config_dict") else id(module)
            key.append(
                (type(module).__name__, repr(sorted(config.items())) if isinstance(config, dict) else config)
            )
    return tuple(key)


def _pad_rows(parts, count: int, pad_id: int, device) -> dict[str, torch.Tensor]:
    """Groups of tokenised rows ``[(rows, features)]`` as one batch of ``count`` rows, right-padded to
    the longest (``input_ids`` with ``pad_id``, masks and token types with 0)."""
    keys = [k for k in parts[0][1] if torch.is_tensor(parts[0][1][k]) and parts[0][1][k].dim() == 2]
    length = max(features["input_ids"].shape[1] for _, features in parts)
    batch = {}
    for key in keys:
        fill = pad_id if key == "input_ids" else 0
        first = parts[0][1][key]
        tensor = torch.full((count, length), fill, dtype=first.dtype)
        for rows, features in parts:
            values = features[key].cpu()
            tensor[rows, : values.shape[1]] = values
        batch[key] = tensor.to(device)
    return batch


@contextlib.contextmanager
def _input_length(pipeline, length: int | None) -> Iterator[None]:
    """``pipeline`` truncates at ``length`` inside the block (``None``: its own), restored afterwards."""
    current = pipeline.max_seq_length
    if length is None or length == current:
        yield
        return
    pipeline.max_seq_length = length
    try:
        yield
    finally:
        pipeline.max_seq_length = current


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)


__all__ = [
    "LATE_INTERACTION",
    "SERVABLE_METHODS",
    "SINGLE_VECTOR",
    "Domain",
    "DomainServer",
    "ServedDomain",
    "load_domains",
    "read_domains_file",
]
