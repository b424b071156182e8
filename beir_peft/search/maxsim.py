"""Late-interaction (ColBERT) search: MaxSim of every query against every document, exactly.

Khattab & Zaharia 2020, section 3.3 (end-to-end retrieval) first gathers candidates with a faiss
index over all document token vectors and then re-ranks them with exact MaxSim; the PT-Retrieval
code evaluates PT2-ColBERT that way (Tam et al. 2022, appendix B.2). :class:`MaxSimSearch` with
``mode="exact"`` is the reference that approximate search is checked against: it scores *every*
document.

The corpus is encoded once into its kept token vectors (punctuation and padding removed), stored as
float16 either in memory or, with ``index_dir``, in a memory-mapped file::

    index_dir/
      maxsim.json    {"format", "kind", "dim", "num_docs", "num_tokens", "model", "fingerprint",
                      "vectors_bytes", "doc_ids"}   (written last: a folder with it is complete)
      doclens.npy    int64 (num_docs,): token vectors per document, in doc_ids order
      vectors.f16    raw float16 (num_tokens, dim), documents one after another

Queries are scored in batches against chunks of documents padded to the chunk's longest document;
a chunk holds as many documents as keep ``query_batch * query_maxlen * docs * longest`` under
``max_scores_elements`` floats, so memory stays bounded whatever the corpus size. No pickle is used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from beir.retrieval.search import BaseSearch

from ..errors import ArtifactError, ConfigError
from ..io import write_json_atomic
from ..models.base import passage_text
from .corpus import check_queries, check_top_k, model_description, sanitize_corpus

logger = logging.getLogger(__name__)

MODES = ("exact", "ann")
#: what ``EvaluateRetrieval`` may pass as ``score_function``: all mean the model's own MaxSim
SCORE_FUNCTIONS = ("maxsim", "cos_sim", "dot", None)
META_FILE = "maxsim.json"
DOCLENS_FILE = "doclens.npy"
VECTORS_FILE = "vectors.f16"
FORMAT_VERSION = 1
KIND = "maxsim-exact"


class MaxSimSearch(BaseSearch):
    """Exact MaxSim search for a late-interaction model such as :class:`beir_peft.PT2ColBERT`.

    Args:
        model: has ``encode_query_tokens(texts, batch_size)`` and
            ``encode_doc_token_lists(texts, batch_size)`` (PT2ColBERT does).
        mode: ``"exact"``; ``"ann"`` (faiss candidates, then MaxSim re-ranking) is not implemented yet.
        batch_size: encoding batch size.
        query_batch_size: queries scored together.
        corpus_chunk_size: documents encoded (and written) at a time.
        max_scores_elements: bound on the similarity tensor of one (query batch, document chunk).
        index_dir: keep the document token vectors in a memory-mapped file in this folder and reuse
            them when the same model (config and weights) meets the same doc ids again.
        device: where scores are computed (default: the model's device).
        show_progress_bar: progress bars while encoding and scoring.

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
    ):
        if mode == "ann":
            raise ConfigError(
                "MaxSimSearch mode 'ann' (faiss candidates over token vectors, then exact MaxSim re-ranking) "
                "is not implemented yet; use mode='exact'"
            )
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value in (
            ("batch_size", batch_size),
            ("query_batch_size", query_batch_size),
            ("corpus_chunk_size", corpus_chunk_size),
            ("max_scores_elements", max_scores_elements),
        ):
            if int(value) < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        self.model = model
        self.mode = mode
        self.batch_size = int(batch_size)
        self.query_batch_size = int(query_batch_size)
        self.corpus_chunk_size = int(corpus_chunk_size)
        self.max_scores_elements = int(max_scores_elements)
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.device = torch.device(device) if device is not None else None
        self.show_progress_bar = show_progress_bar
        self.doc_ids: list[str] = []
        self.doclens: np.ndarray = np.zeros(0, dtype=np.int64)
        self.offsets: np.ndarray = np.zeros(1, dtype=np.int64)
        self.vectors: np.ndarray | None = None  # float16 (num_tokens, dim), in memory or memory-mapped
        self._identity: dict[str, Any] | None = None
        self.results: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ identity of an index
    def _model_identity(self) -> dict[str, Any]:
        fingerprint = getattr(self.model, "fingerprint", None)
        return {
            "model": model_description(self.model),
            "fingerprint": fingerprint() if callable(fingerprint) else None,
        }

    def _matches(self, doc_ids: Sequence[str], identity: dict[str, Any]) -> bool:
        return (
            self.vectors is not None
            and self._identity == identity
            and identity["fingerprint"] is not None
            and self.doc_ids == list(doc_ids)
        )

    # ------------------------------------------------------------------ building
    def build(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        """Encode ``corpus`` into float16 token vectors (into ``index_dir`` when one is set)."""
        doc_ids, docs = sanitize_corpus(corpus)
        texts = [passage_text(doc) for doc in docs]
        identity = self._model_identity()
        logger.info("Encoding %d documents into token vectors for exact MaxSim search", len(texts))
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / META_FILE)  # the folder is incomplete until the new metadata lands
        lens: list[int] = []
        dim = None
        fd, tmp = tempfile.mkstemp(prefix=f".{VECTORS_FILE}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                for vectors in self._encoded_chunks(texts):
                    for v in vectors:
                        dim = v.shape[1]
                        np.ascontiguousarray(v.numpy(), dtype=np.float16).tofile(handle)
                        lens.append(len(v))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / VECTORS_FILE)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
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

    # ------------------------------------------------------------------ a saved index
    @staticmethod
    def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
        """Read and check ``maxsim.json``; :class:`ArtifactError` when missing or malformed."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise ArtifactError(f"no MaxSim index metadata at {path}")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read MaxSim index metadata {path}: {err}") from err
        required = ("format", "kind", "dim", "num_docs", "num_tokens", "doc_ids", "vectors_bytes")
        missing = [key for key in required if not isinstance(meta, dict) or key not in meta]
        if missing:
            raise ArtifactError(f"MaxSim index metadata {path} lacks {missing}")
        if meta["kind"] != KIND or meta["format"] > FORMAT_VERSION:
            raise ArtifactError(f"{path}: not a format-{FORMAT_VERSION} {KIND} index")
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
        identity = {"model": meta.get("model"), "fingerprint": meta.get("fingerprint")}
        self._set(meta["doc_ids"], doclens.astype(np.int64), vectors, identity)

    def _ensure_index(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        doc_ids = list(corpus)
        identity = self._model_identity()
        if self._matches(doc_ids, identity):
            return
        if self.index_dir is not None and (self.index_dir / META_FILE).is_file():
            try:
                self._load_folder(self.index_dir)
            except ArtifactError as err:
                logger.warning("Rebuilding the MaxSim index in %s: %s", self.index_dir, err)
            else:
                if self._matches(doc_ids, identity):
                    logger.info("Reusing the MaxSim index in %s", self.index_dir)
                    return
                logger.info(
                    "The MaxSim index in %s is for another corpus or model; rebuilding", self.index_dir
                )
        self.build(corpus)

    # ------------------------------------------------------------------ searching
    def _chunks(self, query_rows: int) -> list[tuple[int, int]]:
        """Document ranges whose padded similarity tensor stays under ``max_scores_elements``."""
        chunks, start, longest = [], 0, 0
        n = len(self.doclens)
        for end in range(n):
            candidate = max(longest, int(self.doclens[end]))
            if end > start and query_rows * (end - start + 1) * candidate > self.max_scores_elements:
                chunks.append((start, end))
                start, candidate = end, int(self.doclens[end])
            longest = candidate
        if n:
            chunks.append((start, n))
        return chunks

    def _padded(self, start: int, end: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        lens = self.doclens[start:end]
        # a copy: a memory-mapped slice is read-only, and torch wants writable memory
        flat = torch.from_numpy(
            np.array(self.vectors[self.offsets[start] : self.offsets[end]], dtype=np.float16)
        )
        flat = flat.to(device=device, dtype=torch.float32)
        longest = int(lens.max())
        lens_t = torch.as_tensor(lens, device=device)
        mask = torch.arange(longest, device=device)[None, :] < lens_t[:, None]
        padded = torch.zeros(len(lens), longest, flat.shape[1], device=device)
        padded[mask] = flat
        return padded, mask

    def search(
        self,
        corpus: Mapping[str, Mapping[str, Any]],
        queries: Mapping[str, str],
        top_k: int,
        score_function: str | None = "maxsim",
        return_sorted: bool = False,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query by exact MaxSim: ``{query_id: {doc_id: score}}``, best first.

        ``top_k`` larger than the corpus returns every document. Never mutates ``corpus`` or ``queries``.
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
        if q_vectors.shape[-1] != self.vectors.shape[1]:
            raise ConfigError(
                f"query token vectors have dim {q_vectors.shape[-1]}, the index has {self.vectors.shape[1]}"
            )
        device = self.device or getattr(self.model, "device", torch.device("cpu"))
        q_vectors, q_mask = q_vectors.to(device=device, dtype=torch.float32), q_mask.to(device)
        n_queries, q_len, dim = q_vectors.shape
        k = min(int(top_k), len(self.doc_ids))
        best_scores = torch.full((n_queries, k), float("-inf"), device=device)
        best_index = torch.full((n_queries, k), -1, dtype=torch.long, device=device)

        chunks = self._chunks(min(self.query_batch_size, n_queries) * q_len)
        progress = _progress(chunks, self.show_progress_bar and len(chunks) > 1, "MaxSim search")
        with torch.no_grad():
            for start, end in progress:
                docs, d_mask = self._padded(start, end, device)  # read and converted once per chunk
                flat_docs = docs.reshape(-1, dim)
                for q_start in range(0, n_queries, self.query_batch_size):
                    q = q_vectors[q_start : q_start + self.query_batch_size]
                    qm = q_mask[q_start : q_start + self.query_batch_size]
                    sims = (q.reshape(-1, dim) @ flat_docs.T).view(len(q), q_len, end - start, -1)
                    sims = sims.masked_fill(~d_mask[None, None], float("-inf"))
                    per_token = sims.amax(dim=-1).masked_fill(~qm[:, :, None], 0.0)
                    scores = per_token.sum(dim=1)  # (queries, docs in chunk)
                    index = torch.arange(start, end, device=device).expand(len(q), -1)
                    merged_scores = torch.cat([best_scores[q_start : q_start + len(q)], scores], dim=1)
                    merged_index = torch.cat([best_index[q_start : q_start + len(q)], index], dim=1)
                    top = merged_scores.topk(k, dim=1)
                    best_scores[q_start : q_start + len(q)] = top.values
                    best_index[q_start : q_start + len(q)] = merged_index.gather(1, top.indices)

        self.results = {}
        for qid, row_scores, row_index in zip(
            query_ids, best_scores.cpu().tolist(), best_index.cpu().tolist(), strict=True
        ):
            self.results[qid] = {
                self.doc_ids[i]: float(s) for s, i in zip(row_scores, row_index, strict=True) if i >= 0
            }
        return self.results

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


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)


__all__ = ["MODES", "MaxSimSearch"]
