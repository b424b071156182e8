"""Late-interaction (ColBERT) search: exact MaxSim over every document, or faiss candidates + MaxSim.

``mode="exact"`` scores *every* document by MaxSim; it is the reference the approximate mode is
checked against. ``mode="ann"`` is ColBERT v1's end-to-end retrieval (Khattab & Zaharia 2020,
section 3.6), the way the PT-Retrieval code evaluates PT2-ColBERT (Tam et al. 2022, appendix B.2):

1. a faiss inner-product index holds *all* document token vectors, and a token -> document map
   (int32) says whose token each one is;
2. each query token vector retrieves its ``candidates_per_token`` nearest token vectors (ColBERT's
   k', PT-Retrieval's ``faiss_depth``: 100); the candidates of a query are the union of their
   documents;
3. the candidates are re-ranked by exact MaxSim on the stored float16 token vectors (the same
   storage and the same scoring code as the exact mode), and the best ``top_k`` are returned.

The default index is ColBERT v1's IVF-PQ, ``index_factory(dim, "IVF{nlist},PQ{m}", inner
product)``: ``nlist`` = 4·sqrt(n) rounded to a power of two for n token vectors (see
:func:`default_nlist`), ``m = dim / 8`` sub-quantizers of 8 bits (16 for dim 128, ColBERT v1's
setting: 16 bytes per vector), trained on a seeded sample of ``train_size`` vectors, searched with
``nprobe`` 32. Fewer than ``min_ivfpq_vectors`` token vectors (39 x 256 = 9984, the training points
faiss wants for the 256 centroids of each 8-bit sub-quantizer) cannot train IVF-PQ well: the index
is then an exact flat inner-product index, and a log line says so. Because the re-ranking is exact,
a returned score is always the document's true MaxSim; only *which* documents are considered is
approximate (fewer than ``top_k`` come back when there are fewer candidates).

The corpus is encoded once into its kept token vectors (punctuation and padding removed), stored as
float16 either in memory or, with ``index_dir``, in a memory-mapped file::

    index_dir/
      maxsim.json      {"format", "kind", "dim", "num_docs", "num_tokens", "model", "fingerprint",
                        "corpus_sha256", "vectors_bytes", "doc_ids"}   (written last: a folder
                        with it is complete)
      doclens.npy      int64 (num_docs,): token vectors per document, in doc_ids order
      vectors.f16      raw float16 (num_tokens, dim), documents one after another
      # mode="ann" adds:
      ann.faiss        faiss.write_index of the CPU token-vector index
      token_docs.npy   int32 (num_tokens,): the document (position in doc_ids) of each token vector
      ann.json         {"format", "kind", "index_factory", "train_size", "seed", "num_tokens", "dim",
                        "model", "fingerprint", "corpus_sha256", "doc_ids_sha256", "ntotal",
                        "index_bytes"}  (last)

``fingerprint`` is the model's (its config and every weight, :mod:`beir_peft.models.fingerprint`),
``corpus_sha256`` the corpus' ids *and* texts (:func:`~beir_peft.search.corpus.corpus_digest`).
Both parts are reused when the model's fingerprint and the corpus match; the ANN part also needs the
same index settings. Anything else is rebuilt in place with a WARNING naming what differed, and a
model without a ``fingerprint()`` never reuses a saved folder. Every file is written atomically
(beir_peft.io); no pickle is used.

Queries are scored in batches against chunks of documents, without padding: a chunk's token
vectors (float32, one document after another) times the queries' vectors is one matrix product,
and each document's best match per query token is a segment max over its rows. A chunk holds as
many documents as keep both its token block (``tokens x dim``) and its similarities (``tokens x
query_batch * query_maxlen``) under ``max_scores_elements`` floats, so memory stays bounded whatever
the corpus size and however few the queries. In ANN mode a
query batch's candidate documents are read chunk by chunk in the same way, and each query is scored
against its own candidates only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from beir.retrieval.search import BaseSearch

from ..data import passage_text
from ..errors import ArtifactError, ConfigError
from ..io import atomic_open, write_json_atomic
from .corpus import (
    check_queries,
    check_top_k,
    corpus_digest,
    describe_differences,
    model_description,
    model_fingerprint,
    sanitize_corpus,
)

logger = logging.getLogger(__name__)

MODES = ("exact", "ann")
#: what ``EvaluateRetrieval`` may pass as ``score_function``: all mean the model's own MaxSim
SCORE_FUNCTIONS = ("maxsim", "cos_sim", "dot", None)
META_FILE = "maxsim.json"
DOCLENS_FILE = "doclens.npy"
VECTORS_FILE = "vectors.f16"
FORMAT_VERSION = 1
KIND = "maxsim-exact"

ANN_META_FILE = "ann.json"
ANN_INDEX_FILE = "ann.faiss"
TOKEN_DOCS_FILE = "token_docs.npy"
ANN_FORMAT_VERSION = 1
ANN_KIND = "maxsim-ann"
#: below this many token vectors the ANN index is exact (flat): 8-bit PQ has 256 centroids per
#: sub-quantizer and faiss asks for at least 39 training points per centroid
MIN_IVFPQ_VECTORS = 39 * 256
#: the most IVF lists :func:`default_nlist` picks
MAX_NLIST = 1 << 16
#: faiss-gpu's largest k (candidates per token) and nprobe
GPU_MAX_K = 2048
FLAT = "Flat"
_ADD_CHUNK = 1 << 16  # token vectors converted to float32 and added to faiss at a time


def default_nlist(num_vectors: int, train_size: int | None = None) -> int:
    """IVF lists for ``num_vectors`` token vectors: ``4 * sqrt(n)`` rounded to a power of two.

    At most :data:`MAX_NLIST`, and at most the largest power of two with 39 training vectors per
    list (``min(n, train_size) / 39``, faiss' minimum). faiss' guideline is ``4*sqrt(n)`` to
    ``16*sqrt(n)`` lists; ColBERT v1 takes ``2**ceil(log2(8*sqrt(n)))``, two to four times more,
    which with ``nprobe=32`` would probe a smaller share of the vectors. 1.3M token vectors get
    4096 lists (a few thousand documents of a few hundred tokens each).
    """
    n = max(1, int(num_vectors))
    trainable = min(n, int(train_size)) if train_size else n
    nlist = 1 << max(0, round(math.log2(4 * math.sqrt(n))))
    cap = 1 << max(0, int(math.floor(math.log2(max(1, trainable // 39)))))
    return max(1, min(nlist, cap, MAX_NLIST))


def default_pq_m(dim: int) -> int:
    """PQ sub-quantizers for ``dim``: ``dim / 8`` (8 dimensions, one byte each; 16 for dim 128 as in
    ColBERT v1), or the largest divisor of ``dim`` below that."""
    target = max(1, int(dim) // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


class MaxSimSearch(BaseSearch):
    """MaxSim search for a late-interaction model such as :class:`beir_peft.PT2ColBERT`.

    Args:
        model: has ``encode_query_tokens(texts, batch_size)`` and
            ``encode_doc_token_lists(texts, batch_size)`` (PT2ColBERT does).
        mode: ``"exact"`` (MaxSim against every document) or ``"ann"`` (faiss candidates over all
            document token vectors, then exact MaxSim re-ranking; see the module docstring).
        batch_size: encoding batch size.
        query_batch_size: queries scored (and, in ANN mode, searched in faiss) together.
        corpus_chunk_size: documents encoded (and written) at a time.
        max_scores_elements: bound on the similarity tensor of one (query batch, document chunk).
        index_dir: keep the document token vectors in a memory-mapped file in this folder (and, in
            ANN mode, the faiss index and the token -> document map) and reuse them when the same
            model (its fingerprint: config and weights) meets the same corpus (doc ids and texts)
            again. A folder built for another model, corpus or index setting is **rebuilt** and
            replaced, with a WARNING naming what differed; so is any folder searched with a model
            that has no ``fingerprint()`` (nothing tells which model built it).
        device: where MaxSim scores are computed (default: the model's device).
        show_progress_bar: progress bars while encoding and scoring.
        candidates_per_token: ANN: nearest token vectors retrieved per query token (ColBERT's k';
            PT-Retrieval: 100).
        nprobe: ANN: IVF lists visited per query token (PT-Retrieval: 32).
        index_factory: ANN: a faiss ``index_factory`` string used as given (e.g. ``"IVF4,PQ8"``,
            ``"Flat"``, ``"HNSW32"``), always with the inner-product metric. Default: ``None``,
            ``"IVF{nlist},PQ{pq_m}"``, or ``"Flat"`` below ``min_ivfpq_vectors`` token vectors.
        nlist: ANN: IVF lists of the default index (``None``: :func:`default_nlist`).
        pq_m: ANN: PQ sub-quantizers of the default index (``None``: :func:`default_pq_m`).
        min_ivfpq_vectors: ANN: fewer token vectors than this get a flat index instead of the
            default IVF-PQ (default 9984 = 39 x 256).
        train_size: ANN: token vectors sampled (seeded, uniformly) to train the index.
        seed: ANN: seed of that sample.
        use_gpu: ANN: search the faiss index on all visible GPUs (faiss-gpu); MaxSim scoring runs
            on ``device`` whatever this says.

    Usable as ``EvaluateRetrieval(MaxSimSearch(model), score_function="maxsim")``; ``"cos_sim"``
    and ``"dot"`` (what EvaluateRetrieval passes by default) are accepted too and mean the same,
    since the similarity is the model's. A document whose id equals the query id is kept:
    ``EvaluateRetrieval.evaluate(..., ignore_identical_ids=True)`` removes it at evaluation time.
    """

    def __init__(
        self,
        model: Any,
        mode: str = "exact",
        batch_size: int = 32,
        query_batch_size: int = 64,
        corpus_chunk_size: int = 4096,
        max_scores_elements: int = 1 << 26,
        index_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        show_progress_bar: bool = True,
        *,
        candidates_per_token: int = 100,
        nprobe: int = 32,
        index_factory: str | None = None,
        nlist: int | None = None,
        pq_m: int | None = None,
        min_ivfpq_vectors: int = MIN_IVFPQ_VECTORS,
        train_size: int = 1 << 18,
        seed: int = 0,
        use_gpu: bool = False,
    ):
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value in (
            ("batch_size", batch_size),
            ("query_batch_size", query_batch_size),
            ("corpus_chunk_size", corpus_chunk_size),
            ("max_scores_elements", max_scores_elements),
            ("candidates_per_token", candidates_per_token),
            ("nprobe", nprobe),
            ("min_ivfpq_vectors", min_ivfpq_vectors),
            ("train_size", train_size),
            ("nlist", 1 if nlist is None else nlist),
            ("pq_m", 1 if pq_m is None else pq_m),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if index_factory is not None and (not isinstance(index_factory, str) or not index_factory.strip()):
            raise ConfigError(f"index_factory must be a faiss index_factory string, got {index_factory!r}")
        if index_factory is not None and (nlist is not None or pq_m is not None):
            raise ConfigError(
                "nlist and pq_m shape the default IVF-PQ index; with index_factory leave them out"
            )
        if use_gpu:
            if mode != "ann":
                raise ConfigError(
                    "use_gpu moves the faiss index of mode='ann' to the GPU; exact MaxSim runs on `device`"
                )
            faiss = _faiss()
            if faiss.get_num_gpus() == 0:
                raise ConfigError(
                    "use_gpu=True but faiss-gpu is not available (no GPU visible to faiss); "
                    "install the extra `beir-peft[gpu]` or search on CPU"
                )
            if candidates_per_token > GPU_MAX_K or nprobe > GPU_MAX_K:
                raise ConfigError(
                    f"faiss-gpu searches at most {GPU_MAX_K} neighbours and lists; got "
                    f"candidates_per_token={candidates_per_token}, nprobe={nprobe}"
                )
        self.model = model
        self.mode = mode
        self.batch_size = int(batch_size)
        self.query_batch_size = int(query_batch_size)
        self.corpus_chunk_size = int(corpus_chunk_size)
        self.max_scores_elements = int(max_scores_elements)
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.device = torch.device(device) if device is not None else None
        self.show_progress_bar = show_progress_bar
        self.candidates_per_token = int(candidates_per_token)
        self.nprobe = int(nprobe)
        self.index_factory = index_factory.strip() if index_factory is not None else None
        self.nlist = int(nlist) if nlist is not None else None
        self.pq_m = int(pq_m) if pq_m is not None else None
        self.min_ivfpq_vectors = int(min_ivfpq_vectors)
        self.train_size = int(train_size)
        self.seed = int(seed)
        self.use_gpu = bool(use_gpu)
        if mode == "ann":
            dim = getattr(getattr(model, "config", None), "dim", None)
            if isinstance(dim, int) and dim > 0:  # catch a bad factory string or pq_m before encoding
                self._check_factory(dim)

        self.doc_ids: list[str] = []
        self.doclens: np.ndarray = np.zeros(0, dtype=np.int64)
        self.offsets: np.ndarray = np.zeros(1, dtype=np.int64)
        self.vectors: np.ndarray | None = None  # float16 (num_tokens, dim), in memory or memory-mapped
        self._identity: dict[str, Any] | None = None
        self._doc_ids_digest: str | None = None
        # ANN state: the CPU faiss index (what is saved), the index searched (GPU copy or the same)
        self.ann_index: Any = None
        self._ann_search_index: Any = None
        self.token_docs: np.ndarray | None = None  # int32 (num_tokens,), in memory or memory-mapped
        self._ann_identity: dict[str, Any] | None = None
        self.results: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ identity of an index
    def _model_identity(self, corpus_sha256: str) -> dict[str, Any]:
        """What token vectors must have been encoded by and from: the model (its fingerprint) and the
        corpus whose :func:`corpus_digest` is ``corpus_sha256``."""
        return {
            "model": model_description(self.model),
            "fingerprint": model_fingerprint(self.model),
            "corpus_sha256": corpus_sha256,
        }

    def _matches(self, identity: dict[str, Any]) -> bool:
        return self.vectors is not None and self._identity == identity and identity["fingerprint"] is not None

    def _misfit(self, saved: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
        """Why a saved part does not serve ``expected``, for the rebuild warning."""
        if expected["fingerprint"] is None:
            return f"{expected['model']} has no fingerprint(), so nothing tells whether it built the index"
        return describe_differences(saved, expected)

    # ------------------------------------------------------------------ building
    def build(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        """Encode ``corpus`` into float16 token vectors (into ``index_dir`` when one is set)."""
        doc_ids, docs = sanitize_corpus(corpus)
        self._build(doc_ids, docs, self._model_identity(corpus_digest(doc_ids, docs)))

    def _build(self, doc_ids: list[str], docs: list[dict[str, Any]], identity: dict[str, Any]) -> None:
        texts = [passage_text(doc) for doc in docs]
        logger.info("Encoding %d documents into token vectors for MaxSim search", len(texts))
        if self.index_dir is None:
            parts, lens = [], []
            for vectors in self._encoded_chunks(texts):
                parts.extend(v.numpy().astype(np.float16) for v in vectors)
                lens.extend(len(v) for v in vectors)
            self._set(doc_ids, np.asarray(lens, dtype=np.int64), np.concatenate(parts), identity)
        else:
            self._build_on_disk(doc_ids, texts, identity)

    def _encoded_chunks(self, texts: list[str]):
        starts = range(0, len(texts), self.corpus_chunk_size)
        for number, start in enumerate(starts, start=1):
            if len(starts) > 1:
                logger.info("Encoding document chunk %d/%d", number, len(starts))
            yield self.model.encode_doc_token_lists(
                texts[start : start + self.corpus_chunk_size],
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar,
            )

    def _build_on_disk(self, doc_ids: list[str], texts: list[str], identity: dict[str, Any]) -> None:
        folder = self.index_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name in (META_FILE, ANN_META_FILE):  # the folder is incomplete until new metadata lands
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
        lens: list[int] = []
        dim = None
        with atomic_open(folder / VECTORS_FILE, "wb") as handle:
            for vectors in self._encoded_chunks(texts):
                for v in vectors:
                    dim = v.shape[1]
                    np.ascontiguousarray(v.numpy(), dtype=np.float16).tofile(handle)
                    lens.append(len(v))
        doclens = np.asarray(lens, dtype=np.int64)
        _save_npy_atomic(folder / DOCLENS_FILE, doclens)
        meta = {
            "format": FORMAT_VERSION,
            "kind": KIND,
            "dim": int(dim),
            "num_docs": len(doc_ids),
            "num_tokens": int(doclens.sum()),
            **identity,
            "vectors_bytes": os.path.getsize(folder / VECTORS_FILE),
            "doc_ids": list(doc_ids),
        }
        write_json_atomic(folder / META_FILE, meta, indent=None)
        logger.info("Saved %d token vectors of %d documents to %s", meta["num_tokens"], len(doc_ids), folder)
        self._load_folder(folder)

    def _set(self, doc_ids, doclens: np.ndarray, vectors: np.ndarray, identity: dict[str, Any]) -> None:
        self.doc_ids = list(doc_ids)
        self.doclens = doclens
        self.offsets = np.concatenate([[0], np.cumsum(doclens)]).astype(np.int64)
        self.vectors = vectors
        self._identity = identity
        self._doc_ids_digest = hashlib.sha256(json.dumps(self.doc_ids).encode("utf-8")).hexdigest()
        # new token vectors: an ANN index held in memory no longer describes them
        self.ann_index = self._ann_search_index = self.token_docs = self._ann_identity = None

    # ------------------------------------------------------------------ a saved index
    @staticmethod
    def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
        """Read and check ``maxsim.json``; :class:`ArtifactError` when missing or malformed."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise ArtifactError(f"no MaxSim index metadata at {path}")
        meta = _read_index_meta(
            path,
            "MaxSim",
            ("format", "kind", "dim", "num_docs", "num_tokens", "doc_ids", "vectors_bytes"),
            KIND,
            FORMAT_VERSION,
        )
        if not isinstance(meta["doc_ids"], list) or len(meta["doc_ids"]) != meta["num_docs"]:
            raise ArtifactError(f"{path}: doc_ids do not match num_docs={meta['num_docs']}")
        return meta

    def _load_folder(self, folder: Path) -> None:
        meta = self.read_meta(folder)
        vectors_path, doclens_path = folder / VECTORS_FILE, folder / DOCLENS_FILE
        if not vectors_path.is_file() or os.path.getsize(vectors_path) != meta["vectors_bytes"]:
            raise ArtifactError(f"{vectors_path}: missing, or not the size its metadata records")
        try:
            doclens = np.load(doclens_path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read {doclens_path}: {err}") from err
        if doclens.shape != (meta["num_docs"],) or int(doclens.sum()) != meta["num_tokens"]:
            raise ArtifactError(f"{doclens_path} does not match its metadata")
        if meta["vectors_bytes"] != meta["num_tokens"] * meta["dim"] * 2:
            raise ArtifactError(f"{vectors_path}: size does not match num_tokens x dim float16")
        vectors = np.memmap(vectors_path, dtype=np.float16, mode="r", shape=(meta["num_tokens"], meta["dim"]))
        identity = {key: meta.get(key) for key in ("model", "fingerprint", "corpus_sha256")}
        self._set(meta["doc_ids"], doclens.astype(np.int64), vectors, identity)

    def _ensure_index(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        self._ensure_vectors(corpus)
        if self.mode == "ann":
            self._ensure_ann()

    def _ensure_vectors(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        doc_ids, docs = sanitize_corpus(corpus)
        identity = self._model_identity(corpus_digest(doc_ids, docs))
        if self._matches(identity):
            return
        if self.index_dir is not None and (self.index_dir / META_FILE).is_file():
            try:
                meta = self.read_meta(self.index_dir)
                saved = {key: meta.get(key) for key in identity}
                if saved == identity and identity["fingerprint"] is not None:
                    self._load_folder(self.index_dir)
                    logger.info("Reusing the MaxSim token vectors in %s", self.index_dir)
                    return
            except ArtifactError as err:
                logger.warning("Rebuilding the MaxSim index in %s: %s", self.index_dir, err)
            else:
                logger.warning(
                    "The MaxSim index in %s does not fit this search (%s); rebuilding it, and the new "
                    "index replaces it there",
                    self.index_dir,
                    self._misfit(saved, identity),
                )
        self._build(doc_ids, docs, identity)

    # ------------------------------------------------------------------ the ANN index
    def _factory(self, num_vectors: int, dim: int) -> str:
        """The faiss index_factory string for ``num_vectors`` token vectors of dimension ``dim``."""
        if self.index_factory is not None:
            return self.index_factory
        if num_vectors < self.min_ivfpq_vectors:
            return FLAT
        nlist = self.nlist or default_nlist(num_vectors, self.train_size)
        return f"IVF{nlist},PQ{self.pq_m or default_pq_m(dim)}"

    def _check_factory(self, dim: int) -> None:
        """ConfigError now, rather than after encoding the corpus, for a factory faiss cannot build."""
        if self.pq_m is not None and dim % self.pq_m:
            raise ConfigError(f"pq_m={self.pq_m} does not divide the token vector dimension {dim}")
        if self.index_factory is not None:
            _new_faiss_index(dim, self.index_factory)

    def _expected_ann_identity(self) -> dict[str, Any]:
        num_vectors, dim = (int(x) for x in self.vectors.shape)
        return {
            "index_factory": self._factory(num_vectors, dim),
            "train_size": min(num_vectors, self.train_size),
            "seed": self.seed,
            "num_tokens": num_vectors,
            "dim": dim,
            **self._identity,
            "doc_ids_sha256": self._doc_ids_digest,
        }

    def _ensure_ann(self) -> None:
        identity = self._expected_ann_identity()
        if self.ann_index is not None and self._ann_identity == identity:
            return
        if self.index_dir is not None and (self.index_dir / ANN_META_FILE).is_file():
            try:
                if identity["fingerprint"] is not None and self._load_ann(self.index_dir, identity):
                    logger.info(
                        "Reusing the faiss %s token index in %s", identity["index_factory"], self.index_dir
                    )
                    return
                logger.warning(
                    "The ANN index in %s does not fit this search (%s); rebuilding it, and the new index "
                    "replaces it there",
                    self.index_dir,
                    self._misfit(self.read_ann_meta(self.index_dir), identity),
                )
            except ArtifactError as err:
                logger.warning("Rebuilding the ANN index in %s: %s", self.index_dir, err)
        index = self._build_ann(identity)
        token_docs = np.repeat(np.arange(len(self.doclens), dtype=np.int32), self.doclens)
        if self.index_dir is not None:
            self._save_ann(self.index_dir, index, token_docs, identity)
        self._set_ann(index, token_docs, identity)

    def _build_ann(self, identity: dict[str, Any]) -> Any:
        """A trained faiss inner-product index holding every token vector (row i = token i)."""
        num_vectors, dim = identity["num_tokens"], identity["dim"]
        factory = identity["index_factory"]
        if self.index_factory is None and factory == FLAT:
            logger.info(
                "%d token vectors are fewer than min_ivfpq_vectors=%d, too few to train IVF-PQ: "
                "the ANN index is an exact flat inner-product index",
                num_vectors,
                self.min_ivfpq_vectors,
            )
        index = _new_faiss_index(dim, factory)
        if not index.is_trained:
            sample = self._training_sample(identity["train_size"])
            logger.info(
                "Training a faiss %s index on %d of %d token vectors", factory, len(sample), num_vectors
            )
            try:
                index.train(sample)
            except RuntimeError as err:
                raise ConfigError(
                    f"cannot train the faiss index {factory!r} on {len(sample)} token vectors: "
                    f"{_faiss_message(err)}"
                ) from err
        logger.info("Adding %d token vectors to the faiss %s index", num_vectors, factory)
        starts = range(0, num_vectors, _ADD_CHUNK)
        for start in _progress(starts, self.show_progress_bar and len(starts) > 1, "Indexing token vectors"):
            try:
                index.add(np.asarray(self.vectors[start : start + _ADD_CHUNK], dtype=np.float32))
            except RuntimeError as err:
                raise ConfigError(
                    f"cannot add token vectors to the faiss index {factory!r}: {_faiss_message(err)}"
                ) from err
        return index

    def _training_sample(self, size: int) -> np.ndarray:
        num_vectors = len(self.vectors)
        if size >= num_vectors:
            return np.asarray(self.vectors, dtype=np.float32)
        rows = np.sort(np.random.default_rng(self.seed).choice(num_vectors, size=size, replace=False))
        return np.asarray(self.vectors[rows], dtype=np.float32)

    def _set_ann(self, index: Any, token_docs: np.ndarray, identity: dict[str, Any]) -> None:
        faiss = _faiss()
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = self.nprobe
        self.ann_index = index
        self.token_docs = token_docs
        self._ann_identity = identity
        if self.use_gpu:
            logger.info("Moving the faiss token index to %d GPU(s)", faiss.get_num_gpus())
            try:
                gpu_index = faiss.index_cpu_to_all_gpus(index)
                if ivf is not None:
                    space = faiss.GpuParameterSpace()
                    space.initialize(gpu_index)
                    space.set_index_parameter(gpu_index, "nprobe", self.nprobe)
            except (RuntimeError, AttributeError) as err:
                raise ConfigError(
                    f"faiss-gpu cannot hold the index {identity['index_factory']!r}: {_faiss_message(err)}"
                ) from err
            self._ann_search_index = gpu_index
        else:
            self._ann_search_index = index

    def _save_ann(self, folder: Path, index: Any, token_docs: np.ndarray, identity: dict[str, Any]) -> None:
        faiss = _faiss()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / ANN_META_FILE)  # incomplete until the new metadata lands
        with atomic_open(folder / ANN_INDEX_FILE, "wb") as handle:
            faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))
        _save_npy_atomic(folder / TOKEN_DOCS_FILE, token_docs)
        meta = {
            "format": ANN_FORMAT_VERSION,
            "kind": ANN_KIND,
            **identity,
            "ntotal": int(index.ntotal),
            "index_bytes": os.path.getsize(folder / ANN_INDEX_FILE),
        }
        write_json_atomic(folder / ANN_META_FILE, meta, indent=None)
        logger.info(
            "Saved a faiss %s index of %d token vectors to %s",
            identity["index_factory"],
            index.ntotal,
            folder,
        )

    @staticmethod
    def read_ann_meta(folder: str | os.PathLike) -> dict[str, Any]:
        """Read and check ``ann.json``; :class:`ArtifactError` when missing or malformed."""
        return _read_index_meta(
            Path(folder) / ANN_META_FILE,
            "ANN",
            ("format", "kind", "index_factory", "num_tokens", "dim", "ntotal", "index_bytes"),
            ANN_KIND,
            ANN_FORMAT_VERSION,
        )

    def _load_ann(self, folder: Path, identity: dict[str, Any]) -> bool:
        """Load the ANN part of ``folder`` when it was built for ``identity``; ``False`` when it was not."""
        faiss = _faiss()
        meta = self.read_ann_meta(folder)
        if {key: meta.get(key) for key in identity} != identity:
            return False
        index_path, token_docs_path = folder / ANN_INDEX_FILE, folder / TOKEN_DOCS_FILE
        if not index_path.is_file() or os.path.getsize(index_path) != meta["index_bytes"]:
            raise ArtifactError(f"{index_path}: missing, or not the size its metadata records")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as err:
            raise ArtifactError(f"cannot read faiss index {index_path}: {_faiss_message(err)}") from err
        if (index.ntotal, index.d) != (identity["num_tokens"], identity["dim"]) or (
            index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise ArtifactError(
                f"{index_path}: ntotal={index.ntotal}, dim={index.d}, metric={index.metric_type} do not "
                f"match {identity['num_tokens']} inner-product token vectors of dim {identity['dim']}"
            )
        try:
            token_docs = np.load(token_docs_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read {token_docs_path}: {err}") from err
        if token_docs.dtype != np.int32 or token_docs.shape != (identity["num_tokens"],):
            raise ArtifactError(f"{token_docs_path}: not int32 of shape ({identity['num_tokens']},)")
        nonempty = np.flatnonzero(self.doclens)
        ends = (self.offsets[:-1][nonempty], self.offsets[1:][nonempty] - 1)
        if any(not np.array_equal(token_docs[positions], nonempty) for positions in ends):
            raise ArtifactError(f"{token_docs_path} does not match the documents' token counts")
        self._set_ann(index, token_docs, identity)
        return True

    def _candidates(self, q: torch.Tensor, q_mask: torch.Tensor) -> list[np.ndarray]:
        """Per query, the sorted positions of the documents owning a query token's nearest vectors."""
        flat = np.ascontiguousarray(q[q_mask].detach().float().cpu().numpy())
        per_query = q_mask.sum(dim=1).cpu().tolist()
        k = min(self.candidates_per_token, int(self.ann_index.ntotal))
        _, neighbours = self._ann_search_index.search(flat, k)
        found = neighbours >= 0  # faiss pads with -1 when a token finds fewer than k vectors
        owners = np.full(neighbours.shape, -1, dtype=np.int64)
        owners[found] = self.token_docs[neighbours[found]]
        out, row = [], 0
        for count in per_query:
            block = owners[row : row + count]
            out.append(np.unique(block[block >= 0]))
            row += count
        return out

    # ------------------------------------------------------------------ searching
    def _chunks(self, width: int, doclens: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Ranges of ``doclens`` (default: the corpus') whose token vectors times ``width`` (the
        larger of the dimension and the query rows scored at once) stay under ``max_scores_elements``:
        what bounds both the float32 token block and its similarity matrix."""
        doclens = self.doclens if doclens is None else doclens
        budget = max(1, self.max_scores_elements // max(1, width))
        chunks, start, tokens = [], 0, 0
        for end, length in enumerate(doclens.tolist()):
            if end > start and tokens + length > budget:
                chunks.append((start, end))
                start, tokens = end, 0
            tokens += length
        if len(doclens):
            chunks.append((start, len(doclens)))
        return chunks

    def _token_block(self, docs: range | np.ndarray, device: torch.device) -> torch.Tensor:
        """Float32 token vectors of ``docs`` (a range or sorted positions), one document after another."""
        if isinstance(docs, range):  # one contiguous read
            block = self.vectors[int(self.offsets[docs.start]) : int(self.offsets[docs.stop])]
        elif len(docs):  # contiguous slices: much faster than fancy indexing of a memory map
            block = np.concatenate(
                [self.vectors[self.offsets[d] : self.offsets[d + 1]] for d in docs.tolist()]
            )
        else:
            block = np.zeros((0, self.vectors.shape[1]), dtype=np.float16)
        # a copy: a memory-mapped slice is read-only, and torch wants writable memory
        return torch.from_numpy(np.array(block, dtype=np.float16)).to(device=device, dtype=torch.float32)

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str | None = "maxsim",
        return_sorted: bool = False,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query by MaxSim: ``{query_id: {doc_id: score}}``, best first.

        Exact mode: ``top_k`` larger than the corpus returns every document. ANN mode: at most the
        query's candidate documents, each with its exact MaxSim score. Never mutates ``corpus`` or
        ``queries``.
        """
        check_queries(queries)
        check_top_k(top_k)
        if score_function not in SCORE_FUNCTIONS:
            raise ConfigError(
                f"MaxSimSearch scores with the model's MaxSim; score_function must be one of "
                f"{[s for s in SCORE_FUNCTIONS if s]}, got {score_function!r}"
            )
        if not corpus:
            raise ConfigError("the corpus is empty: there is nothing to search")
        self._ensure_index(corpus)

        query_ids = list(queries)
        q_vectors, q_mask = self.model.encode_query_tokens(
            [queries[qid] for qid in query_ids], batch_size=self.batch_size
        )
        best_scores, best_index = self.rank(q_vectors, q_mask, top_k)

        self.results = {}
        for qid, row_scores, row_index in zip(
            query_ids, best_scores.cpu().tolist(), best_index.cpu().tolist(), strict=True
        ):
            self.results[qid] = {
                self.doc_ids[i]: float(s) for s, i in zip(row_scores, row_index, strict=True) if i >= 0
            }
        return self.results

    def rank(
        self, q_vectors: torch.Tensor, q_mask: torch.Tensor, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank the indexed documents for already encoded queries (``encode_query_tokens``' output).

        Returns ``(scores, positions)``, each ``(queries, min(top_k, docs))``, best first; a position
        indexes ``self.doc_ids`` (-1 pads ANN rows with fewer candidates). :meth:`search` is this
        after building the index and encoding the queries; call it directly to time or reuse the
        search alone (the index must exist: run :meth:`search` once first).
        """
        if self.vectors is None:
            raise ConfigError("the index is empty: call search() (or build()) with the corpus first")
        if q_vectors.shape[-1] != self.vectors.shape[1]:
            raise ConfigError(
                f"query token vectors have dim {q_vectors.shape[-1]}, the index has {self.vectors.shape[1]}"
            )
        device = self.device or getattr(self.model, "device", torch.device("cpu"))
        q_vectors, q_mask = q_vectors.to(device=device, dtype=torch.float32), q_mask.to(device)
        k = min(int(top_k), len(self.doc_ids))
        with torch.no_grad():
            if self.mode == "ann":
                if self.ann_index is None:
                    raise ConfigError("the ANN index is not built: call search() with the corpus first")
                return self._search_ann(q_vectors, q_mask, k, device)
            return self._search_exact(q_vectors, q_mask, k, device)

    def _search_exact(self, q_vectors, q_mask, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        n_queries, q_len, dim = q_vectors.shape
        best_scores = torch.full((n_queries, k), float("-inf"), device=device)
        best_index = torch.full((n_queries, k), -1, dtype=torch.long, device=device)
        chunks = self._chunks(max(min(self.query_batch_size, n_queries) * q_len, dim))
        progress = _progress(chunks, self.show_progress_bar and len(chunks) > 1, "MaxSim search")
        for start, end in progress:
            block = self._token_block(range(start, end), device)  # read and converted once per chunk
            lens = torch.as_tensor(self.doclens[start:end], device=device)
            index = torch.arange(start, end, device=device)
            for q_start in range(0, n_queries, self.query_batch_size):
                rows = slice(q_start, q_start + self.query_batch_size)
                scores = _maxsim_flat(q_vectors[rows], q_mask[rows], block, lens)
                _merge_top_k(best_scores[rows], best_index[rows], scores, index.expand(len(scores), -1))
        return best_scores, best_index

    def _search_ann(self, q_vectors, q_mask, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        n_queries, q_len, dim = q_vectors.shape
        best_scores = torch.full((n_queries, k), float("-inf"), device=device)
        best_index = torch.full((n_queries, k), -1, dtype=torch.long, device=device)
        batches = range(0, n_queries, self.query_batch_size)
        for q_start in _progress(batches, self.show_progress_bar and len(batches) > 1, "MaxSim ANN search"):
            q = q_vectors[q_start : q_start + self.query_batch_size]
            qm = q_mask[q_start : q_start + self.query_batch_size]
            candidates = self._candidates(q, qm)
            union = np.unique(np.concatenate(candidates)) if candidates else np.zeros(0, dtype=np.int64)
            # the union's token vectors are read once per chunk; each query is scored against its own
            # candidates only (one query's similarities: its candidates' tokens x q_len)
            for start, end in self._chunks(max(q_len, dim), self.doclens[union]):
                chunk = union[start:end]
                block = self._token_block(chunk, device)
                lens = self.doclens[chunk]
                starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
                for i, own in enumerate(candidates):
                    own = own[(own >= chunk[0]) & (own <= chunk[-1])]
                    if not len(own):
                        continue
                    at = np.searchsorted(chunk, own)
                    if len(at) == len(chunk):  # all of the chunk (always so for a single query)
                        rows = block
                    else:
                        picked = np.repeat(starts[at] - (np.cumsum(lens[at]) - lens[at]), lens[at])
                        rows = block[torch.as_tensor(np.arange(int(lens[at].sum())) + picked, device=device)]
                    scores = _maxsim_flat(
                        q[i : i + 1], qm[i : i + 1], rows, torch.as_tensor(lens[at], device=device)
                    )
                    row = slice(q_start + i, q_start + i + 1)
                    _merge_top_k(
                        best_scores[row], best_index[row], scores, torch.as_tensor(own, device=device)[None]
                    )
        return best_scores, best_index

    # ------------------------------------------------------------------ BaseSearch's file-based API
    def encode(self, corpus, queries, encode_output_path="./embeddings/", overwrite=False, **kwargs) -> None:
        """Not supported: BEIR's pickled-embedding workflow; use ``index_dir``."""
        raise NotImplementedError(
            "MaxSimSearch keeps its token vectors in index_dir; BEIR's pickles are not used"
        )

    def search_from_files(self, query_embeddings_file, corpus_embeddings_files, top_k, **kwargs):
        """Not supported: BEIR's pickled-embedding workflow; use ``index_dir``."""
        raise NotImplementedError(
            "MaxSimSearch keeps its token vectors in index_dir; BEIR's pickles are not used"
        )


def _maxsim_flat(
    q: torch.Tensor, q_mask: torch.Tensor, tokens: torch.Tensor, lens: torch.Tensor
) -> torch.Tensor:
    """MaxSim of queries ``(B, Lq, dim)`` against documents given as their token vectors one after
    another, ``tokens (sum(lens), dim)``, document ``j`` holding ``lens[j]`` rows: scores ``(B, D)``.

    One matrix product and a segment max per document, with no padding; a document without token
    vectors scores ``-inf``.
    """
    n, q_len, dim = q.shape
    sims = tokens @ q.reshape(-1, dim).T  # (tokens, B * Lq)
    best = torch.full((len(lens), n * q_len), float("-inf"), device=tokens.device, dtype=sims.dtype)
    nonempty = lens > 0
    if bool(nonempty.any()):
        best[nonempty] = torch.segment_reduce(sims, "max", lengths=lens[nonempty], axis=0)
    per_token = best.view(len(lens), n, q_len).permute(1, 0, 2)  # (B, D, Lq)
    return per_token.masked_fill(~q_mask[:, None, :], 0.0).sum(dim=-1)


def _merge_top_k(
    best_scores: torch.Tensor, best_index: torch.Tensor, scores: torch.Tensor, index: torch.Tensor
) -> None:
    """Merge ``scores`` of documents ``index`` into the running top-k ``best_*`` (views, in place)."""
    merged_scores = torch.cat([best_scores, scores], dim=1)
    merged_index = torch.cat([best_index, index], dim=1)
    top = merged_scores.topk(best_scores.shape[1], dim=1)
    best_scores.copy_(top.values)
    best_index.copy_(merged_index.gather(1, top.indices))


def _faiss():
    """faiss, imported when the ANN mode needs it."""
    import faiss

    return faiss


def _new_faiss_index(dim: int, factory: str) -> Any:
    """``faiss.index_factory(dim, factory, METRIC_INNER_PRODUCT)`` without polysemous training.

    index_factory turns on polysemous training for PQ codes; it only serves Hamming-filtered search
    (``polysemous_ht``, unused here) and is the slowest part of training, and ColBERT v1, which
    builds its ``IndexIVFPQ`` directly, does not do it.
    """
    faiss = _faiss()
    try:
        index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ConfigError(
            f"faiss cannot build index_factory={factory!r} for dim {dim}: {_faiss_message(err)}"
        ) from err
    for part in (index, faiss.try_extract_index_ivf(index)):
        part = faiss.downcast_index(part) if part is not None else None
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
    return index


def _faiss_message(err: BaseException) -> str:
    """faiss' own reason, without its C++ function signature and source location."""
    text = " ".join(str(err).split())
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*?' failed: )?", "", text)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)


__all__ = ["MODES", "MaxSimSearch", "default_nlist", "default_pq_m"]


def _read_index_meta(
    path: Path, label: str, required: tuple[str, ...], kind: str, version: int
) -> dict[str, Any]:
    """Read an index's JSON metadata and check its fields, kind and format; :class:`ArtifactError` otherwise."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read {label} index metadata {path}: {err}") from err
    missing = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ArtifactError(f"{label} index metadata {path} lacks {missing}")
    if meta["kind"] != kind or meta["format"] > version:
        raise ArtifactError(f"{path}: not a format-{version} {kind} index")
    return meta
