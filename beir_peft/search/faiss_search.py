"""Approximate or exact inner-product search with a faiss index that can be saved and reused.

Flat and HNSW indexes, or any faiss ``index_factory`` string (``"IVF256,Flat"``, ``"IVF256,PQ16"``,
``"HNSW32"``, ...; built and trained by :mod:`.faiss_factory`).

BEIR 2.2.0's faiss searchers cannot be instantiated (they leave ``BaseSearch`` methods abstract)
and pickle their id mappings; :class:`FaissSearch` is a small replacement on BEIR's ``BaseSearch``.

Index folder layout (written by :meth:`FaissSearch.save`, read by :meth:`FaissSearch.load`)::

    index.faiss   faiss.write_index of the CPU index
    index.json    {"format", "doc_ids", "index_type", "score_function", "dim", "ntotal",
                   "hnsw_m", "ef_construction", "index_factory", "train_size", "seed", "model",
                   "fingerprint", "corpus_sha256", "index_bytes"}

``fingerprint`` is the model's (a digest of its weights and settings, see
:mod:`beir_peft.models.fingerprint`) and ``corpus_sha256`` the corpus' ids and texts
(:func:`~beir_peft.search.corpus.corpus_digest`); ``model`` is a description for people only.
No pickle is involved: doc ids are JSON and the index is faiss' own format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from beir.retrieval.search import BaseSearch
from tqdm.auto import tqdm

from ..errors import ArtifactError, ConfigError
from ..io import write_json_atomic
from . import ranks
from .corpus import (
    check_queries,
    check_top_k,
    corpus_digest,
    describe_differences,
    model_description,
    model_fingerprint,
    sanitize_corpus,
)
from .faiss_factory import DEFAULT_TRAIN_SIZE, build_factory_index, set_search_parameters
from .index_files import (
    GPU_FAISS_COMMAND,
    read_index_meta,
    remove_metadata,
    write_faiss_index_atomic,
)

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "factory")
SCORE_FUNCTIONS = ("dot", "cos_sim")
INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT_VERSION = 2  # 2: fingerprint and corpus_sha256 (a format-1 index is never reused by search)


def _as_float32(embeddings: Any) -> np.ndarray:
    """``(n, dim)`` C-contiguous float32 numpy from numpy or a torch tensor."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    array = np.ascontiguousarray(embeddings, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d embedding matrix, got shape {array.shape}")
    return array


class FaissSearch(BaseSearch):
    """Dense search over a faiss inner-product index (``IndexFlatIP``, ``IndexHNSWFlat`` or a factory's).

    Args:
        model: a BEIR dense model (``encode_queries``/``encode_corpus`` returning float32 numpy).
        index_type: ``"flat"`` (exact), ``"hnsw"`` (approximate graph search) or ``"factory"``
            (``index_factory``).
        batch_size: encoding batch size.
        hnsw_m, ef_construction, ef_search: HNSW graph degree, build and search beam widths
            (``ef_search`` also sets a factory HNSW's ``efSearch``).
        index_factory: a faiss ``index_factory`` string (inner product), for ``index_type="factory"``.
        nprobe: IVF lists visited per query (factory IVF indexes; faiss' default 1 when ``None``).
        train_size, seed: a trained factory index is trained on ``train_size`` corpus vectors drawn
            with ``seed`` (all of them for a smaller corpus).
        use_gpu: move the index to all visible GPUs (faiss-gpu; flat and factory indexes).
        show_progress_bar: progress bars while encoding and adding to the index.
        index_dir: a folder caching the index; :meth:`search` reuses an index there only when it
            was built for the same model fingerprint (weights and settings), the same corpus (doc
            ids and texts), index type, HNSW build settings and score function, else builds one and
            saves it there (see below).
        corpus_chunk_size: passages encoded and added to the index at a time (bounds memory).

    A saved index that does not fit is **rebuilt** (as :class:`~beir_peft.search.maxsim.MaxSimSearch`
    does) and the new one replaces it in ``index_dir``, with a WARNING naming what differed (model,
    corpus or setting). A model without a ``fingerprint()`` (an arbitrary BEIR model object) never
    reuses a saved index, since nothing says which model built it: it is rebuilt, with a WARNING.
    An index held in memory is reused by later searches under the same rule.

    For ``score_function="cos_sim"`` both sides are L2-normalised, so inner product is cosine.
    A document whose id equals the query id is *not* dropped: BEIR's
    ``EvaluateRetrieval.evaluate(..., ignore_identical_ids=True)`` removes it at evaluation time.
    """

    def __init__(
        self,
        model: Any,
        index_type: str = "flat",
        batch_size: int = 128,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        use_gpu: bool = False,
        show_progress_bar: bool = True,
        index_dir: str | os.PathLike | None = None,
        corpus_chunk_size: int = 50000,
        index_factory: str | None = None,
        nprobe: int | None = None,
        train_size: int = DEFAULT_TRAIN_SIZE,
        seed: int = 0,
    ):
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        if (index_type == "factory") != (index_factory is not None):
            raise ConfigError(
                "index_factory goes with index_type='factory', and index_type='factory' needs one"
            )
        if use_gpu:
            if faiss.get_num_gpus() == 0:
                raise ConfigError(
                    "use_gpu=True but faiss-gpu is not available (no GPU visible to faiss); "
                    f"there is no beir-peft[gpu] extra, since faiss-gpu-cu12 cannot sit beside faiss-cpu: replace it "
                    f"({GPU_FAISS_COMMAND}) or search on CPU"
                )
            if index_type == "hnsw":
                raise ConfigError("faiss GPU search has no HNSW; use index_type='flat' or a factory index")
        self.model = model
        self.index_type = index_type
        self.batch_size = int(batch_size)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.use_gpu = use_gpu
        self.show_progress_bar = show_progress_bar
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.corpus_chunk_size = int(corpus_chunk_size)
        self.index_factory = index_factory
        self.nprobe = nprobe
        self.train_size = int(train_size)
        self.seed = int(seed)
        self.index: faiss.Index | None = None  # the CPU index (what is saved)
        self._search_index: faiss.Index | None = None  # the index searched (GPU copy or the CPU one)
        self.doc_ids: list[str] = []
        self.score_function: str | None = None
        self._identity: dict[str, Any] | None = None  # what the held index was built for
        self._loaded_from: Path | None = None  # the folder the held index was read from, if any
        self.results: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ building
    def _new_index(self, dim: int) -> faiss.Index:
        if self.index_type == "flat":
            return faiss.IndexFlatIP(dim)
        index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _encode_kwargs(self, score_function: str) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "show_progress_bar": self.show_progress_bar,
            "convert_to_tensor": False,
            "normalize_embeddings": score_function == "cos_sim",
        }

    def _embed(self, embeddings: Any, score_function: str) -> np.ndarray:
        array = _as_float32(embeddings)
        if score_function == "cos_sim":  # idempotent; guards models that ignore normalize_embeddings
            faiss.normalize_L2(array)
        return array

    def expected_identity(self, corpus_sha256: str, score_function: str) -> dict[str, Any]:
        """What an index must have been built for to serve this searcher on a corpus with digest
        ``corpus_sha256``: the model fingerprint, the corpus, the index type, the HNSW build
        settings (HNSW only) and the score function (which decides the L2 normalisation)."""
        identity = {
            "fingerprint": model_fingerprint(self.model),
            "corpus_sha256": corpus_sha256,
            "index_type": self.index_type,
            "score_function": score_function,
        }
        if self.index_type == "hnsw":
            identity.update(hnsw_m=self.hnsw_m, ef_construction=self.ef_construction)
        if self.index_type == "factory":
            identity.update(index_factory=self.index_factory, train_size=self.train_size, seed=self.seed)
        return identity

    def build(self, corpus: Mapping[str, Mapping[str, Any]], score_function: str) -> None:
        """Encode ``corpus`` chunk by chunk and add it to a fresh index (memory stays bounded)."""
        if score_function not in SCORE_FUNCTIONS:
            raise ConfigError(f"score_function must be one of {SCORE_FUNCTIONS}, got {score_function!r}")
        doc_ids, docs = sanitize_corpus(corpus)
        self._build(doc_ids, docs, self.expected_identity(corpus_digest(doc_ids, docs), score_function))

    def _build(self, doc_ids: list[str], docs: list[dict[str, Any]], identity: dict[str, Any]) -> None:
        if self.index_type == "factory":
            self._build_from_shards(doc_ids, docs, identity)
            return
        score_function = identity["score_function"]
        index: faiss.Index | None = None
        starts = range(0, len(docs), self.corpus_chunk_size)
        chunks = tqdm(starts, desc="Indexing corpus", disable=not self.show_progress_bar or len(starts) < 2)
        logger.info(
            "Building a faiss %s index over %d passages (%s)", self.index_type, len(docs), score_function
        )
        for start in chunks:
            chunk = docs[start : start + self.corpus_chunk_size]
            embeddings = self._embed(
                self.model.encode_corpus(chunk, **self._encode_kwargs(score_function)), score_function
            )
            if embeddings.shape[0] != len(chunk):
                raise ValueError(
                    f"encode_corpus returned {embeddings.shape[0]} rows for {len(chunk)} passages"
                )
            if index is None:
                index = self._new_index(embeddings.shape[1])
            index.add(embeddings)
        self._set_index(index, doc_ids, identity)

    def _build_from_shards(
        self, doc_ids: list[str], docs: list[dict[str, Any]], identity: dict[str, Any]
    ) -> None:
        score_function = identity["score_function"]
        logger.info(
            "Building a faiss %r index over %d passages (%s)", self.index_factory, len(docs), score_function
        )
        index, ids = build_factory_index(
            self.model, doc_ids, docs, self.index_factory, embed=lambda x: self._embed(x, score_function),
            batch_size=self.batch_size, chunk_rows=self.corpus_chunk_size, train_size=self.train_size,
            seed=self.seed, show_progress_bar=self.show_progress_bar,
        )  # fmt: skip
        self._set_index(index, ids, identity)

    def _set_index(
        self,
        index: faiss.Index,
        doc_ids: list[str],
        identity: dict[str, Any],
        loaded_from: Path | None = None,
    ) -> None:
        self.index = index
        self.doc_ids = list(doc_ids)
        self.score_function = identity["score_function"]
        self._identity = dict(identity)
        self._loaded_from = loaded_from
        if self.index_type == "hnsw":
            index.hnsw.efSearch = self.ef_search
        if self.index_type == "factory":
            set_search_parameters(index, self.index_factory, nprobe=self.nprobe, ef_search=self.ef_search)
        if self.use_gpu:
            logger.info("Moving the faiss index to %d GPU(s)", faiss.get_num_gpus())
            self._search_index = faiss.index_cpu_to_all_gpus(index)
        else:
            self._search_index = index

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> None:
        """Write ``index.faiss`` and ``index.json`` into ``folder``, each atomically.

        ``index.json`` is removed first and written last, so a run killed in between leaves a
        folder that :meth:`load` rejects rather than an index paired with stale ids
        (:mod:`.index_files`, shared with :class:`~beir_peft.search.maxsim.MaxSimSearch`).
        """
        if self.index is None:
            raise ConfigError("nothing to save: build the index first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        remove_metadata(folder, META_FILE)
        write_faiss_index_atomic(self.index, folder / INDEX_FILE)
        meta = {
            "format": FORMAT_VERSION,
            "index_type": self.index_type,
            "score_function": self.score_function,
            "dim": int(self.index.d),
            "ntotal": int(self.index.ntotal),
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "index_factory": self.index_factory,
            "train_size": self.train_size,
            "seed": self.seed,
            "model": model_description(self.model),
            "fingerprint": self._identity.get("fingerprint") if self._identity else None,
            "corpus_sha256": self._identity.get("corpus_sha256") if self._identity else None,
            "index_bytes": os.path.getsize(folder / INDEX_FILE),
            "doc_ids": self.doc_ids,
        }
        write_json_atomic(folder / META_FILE, meta, indent=None)
        logger.info("Saved a faiss %s index of %d passages to %s", self.index_type, self.index.ntotal, folder)

    @staticmethod
    def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
        """Read and check ``index.json``; raises :class:`ArtifactError` when missing or malformed."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise ArtifactError(f"no faiss index metadata at {path}")
        meta = read_index_meta(path, "faiss", ("index_type", "score_function", "dim", "ntotal", "doc_ids"))
        if meta["index_type"] not in INDEX_TYPES or meta["score_function"] not in SCORE_FUNCTIONS:
            raise ArtifactError(
                f"faiss index metadata {path} has index_type={meta['index_type']!r}, "
                f"score_function={meta['score_function']!r}"
            )
        if not isinstance(meta["doc_ids"], list) or len(meta["doc_ids"]) != meta["ntotal"]:
            raise ArtifactError(f"faiss index metadata {path}: doc_ids do not match ntotal={meta['ntotal']}")
        return meta

    @classmethod
    def load(cls, folder: str | os.PathLike, model: Any, **kwargs: Any) -> FaissSearch:
        """A searcher over the index saved in ``folder``; ``kwargs`` as for the constructor.

        Raises :class:`ArtifactError` when a file is missing or unreadable, or when the index and its
        metadata disagree (dimension, size, type). :meth:`search` uses the loaded index only when it
        fits ``model`` and the corpus (see the class docstring); otherwise it warns and rebuilds.
        """
        folder = Path(folder)
        meta = cls.read_meta(folder)
        index_path = folder / INDEX_FILE
        if not index_path.is_file():
            raise ArtifactError(f"no faiss index at {index_path}")
        if "index_bytes" in meta and os.path.getsize(index_path) != meta["index_bytes"]:
            raise ArtifactError(f"faiss index {index_path} does not have the size its metadata records")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as err:
            raise ArtifactError(f"cannot read faiss index {index_path}: {err}") from err
        if index.d != meta["dim"] or index.ntotal != meta["ntotal"]:
            raise ArtifactError(
                f"faiss index {index_path} has dim={index.d}, ntotal={index.ntotal} but its metadata says "
                f"dim={meta['dim']}, ntotal={meta['ntotal']}"
            )
        expected = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat}.get(
            meta["index_type"], faiss.Index
        )
        if not isinstance(index, expected) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ArtifactError(
                f"faiss index {index_path} is not an inner-product {meta['index_type']} index"
            )
        kwargs.setdefault("hnsw_m", meta.get("hnsw_m", 32))
        kwargs.setdefault("ef_construction", meta.get("ef_construction", 200))
        if meta["index_type"] == "factory":
            kwargs.update(index_factory=meta.get("index_factory"))
            kwargs.setdefault("train_size", meta.get("train_size", DEFAULT_TRAIN_SIZE))
            kwargs.setdefault("seed", meta.get("seed", 0))
        searcher = cls(model, index_type=meta["index_type"], **kwargs)
        identity = {
            "fingerprint": meta.get("fingerprint"),
            "corpus_sha256": meta.get("corpus_sha256"),
            "index_type": meta["index_type"],
            "score_function": meta["score_function"],
            "hnsw_m": meta.get("hnsw_m"),
            "ef_construction": meta.get("ef_construction"),
            "index_factory": meta.get("index_factory"),
            "train_size": meta.get("train_size"),
            "seed": meta.get("seed"),
        }
        searcher._set_index(index, meta["doc_ids"], identity, loaded_from=folder)
        return searcher

    # ------------------------------------------------------------------ searching
    def _fits(self, identity: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> bool:
        """An index built for ``identity`` serves ``expected`` (never for a model without a fingerprint)."""
        return (
            expected["fingerprint"] is not None
            and identity is not None
            and {key: identity.get(key) for key in expected} == dict(expected)
        )

    def _ensure_index(self, corpus: Mapping[str, Mapping[str, Any]], score_function: str) -> None:
        """Reuse the index in memory or in ``index_dir`` when it fits the model and ``corpus``, else
        build it (and save it to ``index_dir``); a misfit saved index is reported as a WARNING."""
        doc_ids, docs = sanitize_corpus(corpus)
        expected = self.expected_identity(corpus_digest(doc_ids, docs), score_function)
        if self.index is not None and self._fits(self._identity, expected):
            return
        if self.index is not None and self._loaded_from not in (None, self.index_dir):
            logger.warning(
                "The faiss index loaded from %s does not fit this search (%s); rebuilding it",
                self._loaded_from,
                self._misfit(self._identity, expected),
            )
        if self.index_dir is not None and (self.index_dir / META_FILE).is_file():
            try:
                meta = self.read_meta(self.index_dir)
            except ArtifactError as err:
                logger.warning("Rebuilding the faiss index in %s: %s", self.index_dir, err)
            else:
                if self._fits(meta, expected):
                    loaded = self.load(
                        self.index_dir, self.model, ef_search=self.ef_search, nprobe=self.nprobe
                    )
                    logger.info("Reusing the faiss index in %s", self.index_dir)
                    self._set_index(loaded.index, loaded.doc_ids, expected, loaded_from=self.index_dir)
                    return
                logger.warning(
                    "The faiss index in %s does not fit this search (%s); rebuilding it, and the new "
                    "index replaces it there",
                    self.index_dir,
                    self._misfit(meta, expected),
                )
        self._build(doc_ids, docs, expected)
        if self.index_dir is not None and ranks.is_main():  # under torchrun every rank builds; one writes
            self.save(self.index_dir)

    def _misfit(self, saved: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str:
        if expected["fingerprint"] is None:
            return (
                f"{model_description(self.model)} has no fingerprint(), so nothing tells whether it built "
                "the index"
            )
        return describe_differences(saved or {}, expected)

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str = "cos_sim",
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query: ``{query_id: {doc_id: score}}``, best first.

        ``top_k`` larger than the corpus returns every document (HNSW may return fewer).
        """
        check_queries(queries)
        check_top_k(top_k)
        if score_function not in SCORE_FUNCTIONS:
            raise ConfigError(f"score_function must be one of {SCORE_FUNCTIONS}, got {score_function!r}")
        if not corpus:
            raise ConfigError("the corpus is empty: there is nothing to search")
        self._ensure_index(corpus, score_function)
        assert self._search_index is not None

        query_ids = list(queries)
        logger.info("Encoding %d queries", len(query_ids))
        query_embeddings = self._embed(
            self.model.encode_queries(
                [queries[qid] for qid in query_ids], **self._encode_kwargs(score_function)
            ),
            score_function,
        )
        if query_embeddings.shape[1] != self._search_index.d:
            raise ConfigError(
                f"query embeddings have dim {query_embeddings.shape[1]} but the index has dim {self._search_index.d}"
            )
        k = min(int(top_k), self._search_index.ntotal)
        scores, indices = self._search_index.search(query_embeddings, k)

        self.results = {}
        for qid, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist(), strict=True):
            # faiss pads with -1 when it finds fewer than k neighbours (HNSW)
            self.results[qid] = {
                self.doc_ids[idx]: float(score)
                for score, idx in zip(row_scores, row_indices, strict=True)
                if idx >= 0
            }
        return self.results

    # ------------------------------------------------------------------ BaseSearch's file-based API
    def encode(self, corpus, queries, encode_output_path="./embeddings/", overwrite=False, **kwargs) -> None:
        """Not supported: BEIR's pickled-embedding workflow; use :meth:`build` and :meth:`save`."""
        raise NotImplementedError(
            "FaissSearch saves indexes with save(); BEIR's pickled embeddings are not used"
        )

    def search_from_files(self, query_embeddings_file, corpus_embeddings_files, top_k, **kwargs):
        """Not supported: BEIR's pickled-embedding workflow; use :meth:`load` and :meth:`search`."""
        raise NotImplementedError(
            "FaissSearch loads indexes with load(); BEIR's pickled embeddings are not used"
        )
