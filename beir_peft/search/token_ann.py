"""The faiss index over every token vector of a :class:`~.token_store.TokenStore`: train, add, save, load.

ColBERT v1's candidate generation (Khattab & Zaharia 2020, section 3.6), as the PT-Retrieval code
runs it for PT2-ColBERT (Tam et al. 2022, appendix B.2): a faiss inner-product index holds *all*
document token vectors, a token -> document map (int32) says whose token each one is, and each
query token vector retrieves its ``candidates_per_token`` nearest token vectors (ColBERT's k',
PT-Retrieval's ``faiss_depth``: 100); the candidates of a query are the union of their documents.

The default index is ColBERT v1's IVF-PQ, ``index_factory(dim, "IVF{nlist},PQ{m}", inner
product)``: ``nlist`` = 4·sqrt(n) rounded to a power of two for n token vectors (see
:func:`default_nlist`), ``m = dim / 8`` sub-quantizers of 8 bits (16 for dim 128, ColBERT v1's
setting: 16 bytes per vector), trained on a seeded sample of ``train_size`` vectors, searched with
``nprobe`` 32. ``candidates_per_token=None`` (the default) picks k' from the corpus size
(:func:`default_candidates_per_token`). Fewer than ``min_ivfpq_vectors`` token vectors (39 x 256 = 9984, the training points
faiss wants for the 256 centroids of each 8-bit sub-quantizer) cannot train IVF-PQ well: the index
is then an exact flat inner-product index, and a log line says so.

Saved beside the token store, in the same folder::

    ann.faiss        faiss.write_index of the CPU token-vector index
    token_docs.npy   int32 (num_tokens,): the document (position in doc_ids) of each token vector
    ann.json         {"format", "kind", "index_factory", "train_size", "seed", "num_tokens", "dim",
                      "model", "fingerprint", "corpus_sha256", "doc_ids_sha256", "ntotal",
                      "index_bytes"}  (last)

A saved index is reused when it was built for the same token store (model fingerprint, corpus, doc
id order) and the same index settings; otherwise it is rebuilt in place, with a WARNING naming what
differed.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArtifactError, ConfigError
from ..io import write_json_atomic
from .index_files import (
    faiss_message,
    import_faiss,
    read_index_meta,
    remove_metadata,
    save_npy_atomic,
    write_faiss_index_atomic,
)
from .token_store import TokenStore

#: a child of MaxSimSearch's logger, so that configuring "beir_peft.search.maxsim" covers it too
logger = logging.getLogger("beir_peft.search.maxsim.token_ann")

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
#: PT-Retrieval's faiss_depth, ColBERT's k' (Tam et al. 2022, appendix B.2): the default's ceiling
AUTHORS_CANDIDATES_PER_TOKEN = 100
#: the default's floor: fewer nearest tokens per query token start to miss relevant documents
MIN_CANDIDATES_PER_TOKEN = 8
#: the default aims at candidates from at most this share of the corpus (before the union's overlap)
CANDIDATE_SHARE = 0.05
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


def default_candidates_per_token(num_docs: int, query_tokens: int) -> int:
    """ColBERT's k' for a corpus of ``num_docs`` documents and queries of ``query_tokens`` tokens.

    The rule: a query's ``query_tokens * k'`` nearest token vectors should name at most
    :data:`CANDIDATE_SHARE` (5%) of the corpus, so ``k' = ceil(0.05 * num_docs / query_tokens)``,
    kept within [:data:`MIN_CANDIDATES_PER_TOKEN`, :data:`AUTHORS_CANDIDATES_PER_TOKEN`] = [8, 100].
    The authors' k' = 100 was set for MS MARCO's 8.8M passages, where 32 x 100 tokens name a
    vanishing share of the corpus; on SciFact's 5,183 documents it names up to 3,200 of them, and the
    re-ranking by exact MaxSim then costs nearly an exhaustive search. The rule gives 100 from
    64,000 documents up (32-token queries) and 9 on SciFact, where benchmarks/maxsim_ann_vs_exact.py
    measures it >= 10x faster than exact MaxSim at nDCG@10 within 0.005.
    """
    wanted = math.ceil(CANDIDATE_SHARE * max(1, int(num_docs)) / max(1, int(query_tokens)))
    return max(MIN_CANDIDATES_PER_TOKEN, min(AUTHORS_CANDIDATES_PER_TOKEN, wanted))


def default_pq_m(dim: int) -> int:
    """PQ sub-quantizers for ``dim``: ``dim / 8`` (8 dimensions, one byte each; 16 for dim 128 as in
    ColBERT v1), or the largest divisor of ``dim`` below that."""
    target = max(1, int(dim) // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def new_faiss_index(dim: int, factory: str) -> Any:
    """``faiss.index_factory(dim, factory, METRIC_INNER_PRODUCT)`` without polysemous training.

    index_factory turns on polysemous training for PQ codes; it only serves Hamming-filtered search
    (``polysemous_ht``, unused here) and is the slowest part of training, and ColBERT v1, which
    builds its ``IndexIVFPQ`` directly, does not do it.
    """
    faiss = import_faiss()
    try:
        index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ConfigError(
            f"faiss cannot build index_factory={factory!r} for dim {dim}: {faiss_message(err)}"
        ) from err
    for part in (index, faiss.try_extract_index_ivf(index)):
        part = faiss.downcast_index(part) if part is not None else None
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
    return index


def read_ann_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``ann.json``; :class:`ArtifactError` when missing or malformed."""
    return read_index_meta(
        Path(folder) / ANN_META_FILE,
        "ANN",
        ("format", "kind", "index_factory", "num_tokens", "dim", "ntotal", "index_bytes"),
        ANN_KIND,
        ANN_FORMAT_VERSION,
    )


class TokenANN:
    """The faiss token-vector index of a token store, its settings and its lifecycle.

    Settings as :class:`~beir_peft.search.maxsim.MaxSimSearch` documents them (which decides when
    to :meth:`load`, :meth:`build` and :meth:`save`). After :meth:`set`, ``index`` is the CPU index (what is saved), ``search_index`` the one searched (a GPU copy with
    ``use_gpu``, else the same), ``token_docs`` the token -> document map and ``identity`` what
    they were built for.
    """

    def __init__(
        self,
        *,
        candidates_per_token: int | None,
        nprobe: int,
        index_factory: str | None,
        nlist: int | None,
        pq_m: int | None,
        min_ivfpq_vectors: int,
        train_size: int,
        seed: int,
        use_gpu: bool,
        show_progress_bar: bool,
    ):
        self.candidates_per_token = int(candidates_per_token) if candidates_per_token is not None else None
        self.nprobe = int(nprobe)
        self.index_factory = index_factory.strip() if index_factory is not None else None
        self.nlist = int(nlist) if nlist is not None else None
        self.pq_m = int(pq_m) if pq_m is not None else None
        self.min_ivfpq_vectors = int(min_ivfpq_vectors)
        self.train_size = int(train_size)
        self.seed = int(seed)
        self.use_gpu = bool(use_gpu)
        self.show_progress_bar = show_progress_bar
        self.index: Any = None
        self.search_index: Any = None
        self.token_docs: np.ndarray | None = None  # int32 (num_tokens,), in memory or memory-mapped
        self.identity: dict[str, Any] | None = None

    # ------------------------------------------------------------------ settings
    def factory(self, num_vectors: int, dim: int) -> str:
        """The faiss index_factory string for ``num_vectors`` token vectors of dimension ``dim``."""
        if self.index_factory is not None:
            return self.index_factory
        if num_vectors < self.min_ivfpq_vectors:
            return FLAT
        nlist = self.nlist or default_nlist(num_vectors, self.train_size)
        return f"IVF{nlist},PQ{self.pq_m or default_pq_m(dim)}"

    def check_factory(self, dim: int) -> None:
        """ConfigError now, rather than after encoding the corpus, for a factory faiss cannot build."""
        if self.pq_m is not None and dim % self.pq_m:
            raise ConfigError(f"pq_m={self.pq_m} does not divide the token vector dimension {dim}")
        if self.index_factory is not None:
            new_faiss_index(dim, self.index_factory)

    def expected_identity(self, store: TokenStore) -> dict[str, Any]:
        """What an index must have been built for to serve ``store`` with these settings."""
        num_vectors, dim = (int(x) for x in store.vectors.shape)
        return {
            "index_factory": self.factory(num_vectors, dim),
            "train_size": min(num_vectors, self.train_size),
            "seed": self.seed,
            "num_tokens": num_vectors,
            "dim": dim,
            **store.identity,
            "doc_ids_sha256": store.doc_ids_digest,
        }

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Forget the index: new token vectors make it stale."""
        self.index = self.search_index = self.token_docs = self.identity = None

    def holds(self, identity: dict[str, Any]) -> bool:
        """The index held was built for ``identity``."""
        return self.index is not None and self.identity == identity

    def build(self, store: TokenStore, identity: dict[str, Any]) -> Any:
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
        index = new_faiss_index(dim, factory)
        if not index.is_trained:
            sample = store.sample(identity["train_size"], self.seed)
            logger.info(
                "Training a faiss %s index on %d of %d token vectors", factory, len(sample), num_vectors
            )
            try:
                index.train(sample)
            except RuntimeError as err:
                raise ConfigError(
                    f"cannot train the faiss index {factory!r} on {len(sample)} token vectors: "
                    f"{faiss_message(err)}"
                ) from err
        logger.info("Adding %d token vectors to the faiss %s index", num_vectors, factory)
        starts = range(0, num_vectors, _ADD_CHUNK)
        if self.show_progress_bar and len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Indexing token vectors")
        for start in starts:
            try:
                index.add(np.asarray(store.vectors[start : start + _ADD_CHUNK], dtype=np.float32))
            except RuntimeError as err:
                raise ConfigError(
                    f"cannot add token vectors to the faiss index {factory!r}: {faiss_message(err)}"
                ) from err
        return index

    def set(self, index: Any, token_docs: np.ndarray, identity: dict[str, Any]) -> None:
        """Hold ``index`` (and its GPU copy with ``use_gpu``), searched with ``nprobe`` lists."""
        faiss = import_faiss()
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = self.nprobe
        self.index = index
        self.token_docs = token_docs
        self.identity = identity
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
                    f"faiss-gpu cannot hold the index {identity['index_factory']!r}: {faiss_message(err)}"
                ) from err
            self.search_index = gpu_index
        else:
            self.search_index = index

    # ------------------------------------------------------------------ a saved index
    def save(self, folder: Path, index: Any, token_docs: np.ndarray, identity: dict[str, Any]) -> None:
        """Write ``index``, ``token_docs`` and then ``ann.json`` into ``folder``, each atomically."""
        remove_metadata(folder, ANN_META_FILE)  # incomplete until the new metadata lands
        write_faiss_index_atomic(index, folder / ANN_INDEX_FILE)
        save_npy_atomic(folder / TOKEN_DOCS_FILE, token_docs)
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

    def load(self, folder: Path, store: TokenStore, identity: dict[str, Any]) -> bool:
        """Load the index saved in ``folder`` when it was built for ``identity``; ``False`` when it was not."""
        faiss = import_faiss()
        meta = read_ann_meta(folder)
        if {key: meta.get(key) for key in identity} != identity:
            return False
        index_path, token_docs_path = folder / ANN_INDEX_FILE, folder / TOKEN_DOCS_FILE
        if not index_path.is_file() or os.path.getsize(index_path) != meta["index_bytes"]:
            raise ArtifactError(f"{index_path}: missing, or not the size its metadata records")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as err:
            raise ArtifactError(f"cannot read faiss index {index_path}: {faiss_message(err)}") from err
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
        nonempty = np.flatnonzero(store.doclens)
        ends = (store.offsets[:-1][nonempty], store.offsets[1:][nonempty] - 1)
        if any(not np.array_equal(token_docs[positions], nonempty) for positions in ends):
            raise ArtifactError(f"{token_docs_path} does not match the documents' token counts")
        self.set(index, token_docs, identity)
        return True

    # ------------------------------------------------------------------ candidates
    def candidates_for(self, num_docs: int, query_tokens: int) -> int:
        """k': ``candidates_per_token`` as set, or :func:`default_candidates_per_token` for ``None``."""
        if self.candidates_per_token is not None:
            return int(self.candidates_per_token)
        return default_candidates_per_token(num_docs, query_tokens)

    def candidates(self, q: torch.Tensor, q_mask: torch.Tensor, num_docs: int) -> list[np.ndarray]:
        """Per query, the sorted positions of the documents owning a query token's nearest vectors
        (``q``: ``(n, query_len, dim)``, ``q_mask``: ``(n, query_len)``; ``num_docs``: the corpus')."""
        flat = np.ascontiguousarray(q[q_mask].detach().float().cpu().numpy())
        per_query = q_mask.sum(dim=1).cpu().tolist()
        k = min(self.candidates_for(num_docs, q.shape[1]), int(self.index.ntotal))
        _, neighbours = self.search_index.search(flat, k)
        found = neighbours >= 0  # faiss pads with -1 when a token finds fewer than k vectors
        owners = np.full(neighbours.shape, -1, dtype=np.int64)
        owners[found] = self.token_docs[neighbours[found]]
        out, row = [], 0
        for count in per_query:
            block = owners[row : row + count]
            out.append(np.unique(block[block >= 0]))
            row += count
        return out
