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

Because the re-ranking is exact, a returned score is always the document's true MaxSim; only
*which* documents are considered is approximate (fewer than ``top_k`` come back when there are
fewer candidates). Three modules, one job each:

* :mod:`.token_store`: the corpus encoded once into its kept token vectors (punctuation and padding
  removed), float16, in memory or memory-mapped from ``index_dir`` (``maxsim.json``,
  ``doclens.npy``, ``vectors.f16``);
* :mod:`.token_ann`: the faiss index over those vectors (ColBERT v1's IVF-PQ by default, flat
  below ``min_ivfpq_vectors``), trained, filled, saved and loaded (``ann.faiss``,
  ``token_docs.npy``, ``ann.json``);
* this module: the search, bounded query batches x document chunks scored by
  :func:`beir_peft.scores.packed_maxsim`.

Both saved parts are reused when the model's fingerprint and the corpus match; the ANN part also
needs the same index settings. Anything else is rebuilt in place with a WARNING naming what
differed, and a model without a ``fingerprint()`` never reuses a saved folder.

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

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from beir.retrieval.search import BaseSearch

from ..data import passage_text
from ..errors import ArtifactError, ConfigError
from ..scores import packed_maxsim
from .corpus import (
    check_queries,
    check_top_k,
    corpus_digest,
    model_description,
    model_fingerprint,
    sanitize_corpus,
)
from .index_files import GPU_FAISS_COMMAND, describe_misfit, import_faiss, remove_metadata
from .token_ann import (
    ANN_FORMAT_VERSION,
    ANN_INDEX_FILE,
    ANN_KIND,
    ANN_META_FILE,
    FLAT,
    GPU_MAX_K,
    MAX_NLIST,
    MIN_IVFPQ_VECTORS,
    TOKEN_DOCS_FILE,
    TokenANN,
    default_nlist,
    default_pq_m,
    read_ann_meta,
)
from .token_store import (
    DOCLENS_FILE,
    FORMAT_VERSION,
    IDENTITY_KEYS,
    KIND,
    META_FILE,
    VECTORS_FILE,
    TokenStore,
)

logger = logging.getLogger(__name__)

MODES = ("exact", "ann")
#: what ``EvaluateRetrieval`` may pass as ``score_function``: all mean the model's own MaxSim
SCORE_FUNCTIONS = ("maxsim", "cos_sim", "dot", None)

#: the file names and formats of a saved folder stay importable from here
__all__ = [
    "ANN_FORMAT_VERSION",
    "ANN_INDEX_FILE",
    "ANN_KIND",
    "ANN_META_FILE",
    "DOCLENS_FILE",
    "FLAT",
    "FORMAT_VERSION",
    "GPU_MAX_K",
    "KIND",
    "MAX_NLIST",
    "META_FILE",
    "MIN_IVFPQ_VECTORS",
    "MODES",
    "SCORE_FUNCTIONS",
    "TOKEN_DOCS_FILE",
    "VECTORS_FILE",
    "MaxSimSearch",
    "default_nlist",
    "default_pq_m",
]


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
        candidates_per_token: ANN: nearest token vectors retrieved per query token (ColBERT's k').
            Default ``None``: chosen from the corpus size by
            :func:`~.token_ann.default_candidates_per_token` (9 on SciFact's 5,183 documents, the
            authors' 100 from 64,000 documents up); :meth:`resolved_candidates_per_token` says which.
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
        candidates_per_token: int | None = None,
        nprobe: int = 32,
        index_factory: str | None = None,
        nlist: int | None = None,
        pq_m: int | None = None,
        min_ivfpq_vectors: int = MIN_IVFPQ_VECTORS,
        train_size: int = 1 << 18,
        seed: int = 0,
        use_gpu: bool = False,
    ):
        _check_settings(
            mode=mode,
            batch_size=batch_size,
            query_batch_size=query_batch_size,
            corpus_chunk_size=corpus_chunk_size,
            max_scores_elements=max_scores_elements,
            candidates_per_token=candidates_per_token,
            nprobe=nprobe,
            min_ivfpq_vectors=min_ivfpq_vectors,
            train_size=train_size,
            nlist=nlist,
            pq_m=pq_m,
            index_factory=index_factory,
            use_gpu=use_gpu,
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
        self._ann = TokenANN(
            candidates_per_token=candidates_per_token,
            nprobe=nprobe,
            index_factory=index_factory,
            nlist=nlist,
            pq_m=pq_m,
            min_ivfpq_vectors=min_ivfpq_vectors,
            train_size=train_size,
            seed=seed,
            use_gpu=use_gpu,
            show_progress_bar=show_progress_bar,
        )
        if mode == "ann":
            dim = getattr(getattr(model, "config", None), "dim", None)
            if isinstance(dim, int) and dim > 0:  # catch a bad factory string or pq_m before encoding
                self._ann.check_factory(dim)
        self.store: TokenStore | None = None
        self.results: dict[str, dict[str, float]] = {}

    # the ANN settings are the TokenANN's (normalised there), read through the searcher
    candidates_per_token = property(lambda self: self._ann.candidates_per_token)
    nprobe = property(lambda self: self._ann.nprobe)
    index_factory = property(lambda self: self._ann.index_factory)
    use_gpu = property(lambda self: self._ann.use_gpu)

    # ------------------------------------------------------------------ what is held
    def resolved_candidates_per_token(self) -> int | None:
        """k' searched with: as set, or the corpus-size default for the corpus held (``None``: no
        corpus yet, or exact mode)."""
        if self.mode != "ann" or self.store is None:
            return None
        query_tokens = int(getattr(self.model, "query_maxlen", 32))
        return self._ann.candidates_for(len(self.doc_ids), query_tokens)

    def search_settings(self) -> dict[str, Any]:
        """What the last search ran with, defaults resolved (for a result's record)."""
        settings: dict[str, Any] = {"mode": self.mode}
        if self.mode == "ann":
            identity = self._ann_identity or {}
            settings.update(candidates_per_token=self.resolved_candidates_per_token(), nprobe=self.nprobe,
                            index_factory=identity.get("index_factory"))  # fmt: skip
        return settings

    @property
    def doc_ids(self) -> list[str]:
        return self.store.doc_ids if self.store is not None else []

    @property
    def doclens(self) -> np.ndarray:
        """int64 ``(num_docs,)``: token vectors per document."""
        return self.store.doclens if self.store is not None else np.zeros(0, dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return self.store.offsets if self.store is not None else np.zeros(1, dtype=np.int64)

    @property
    def vectors(self) -> np.ndarray | None:
        """float16 ``(num_tokens, dim)``, in memory or memory-mapped (``None`` before the index is built)."""
        return self.store.vectors if self.store is not None else None

    @property
    def ann_index(self) -> Any:
        """The CPU faiss token index (what is saved); ``None`` until ``mode="ann"`` builds it."""
        return self._ann.index

    @property
    def token_docs(self) -> np.ndarray | None:
        """int32 ``(num_tokens,)``: the document of each token vector of the ANN index."""
        return self._ann.token_docs

    @property
    def _ann_identity(self) -> dict[str, Any] | None:
        """What the ANN index held was built for (factory, sample, token vectors)."""
        return self._ann.identity

    read_meta = staticmethod(TokenStore.read_meta)
    read_ann_meta = staticmethod(read_ann_meta)

    # ------------------------------------------------------------------ building
    def _model_identity(self, corpus_sha256: str) -> dict[str, Any]:
        """What token vectors must have been encoded by and from: the model (its fingerprint) and the
        corpus whose :func:`corpus_digest` is ``corpus_sha256``."""
        return {
            "model": model_description(self.model),
            "fingerprint": model_fingerprint(self.model),
            "corpus_sha256": corpus_sha256,
        }

    def build(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        """Encode ``corpus`` into float16 token vectors (into ``index_dir`` when one is set)."""
        doc_ids, docs = sanitize_corpus(corpus)
        self._build(doc_ids, docs, self._model_identity(corpus_digest(doc_ids, docs)))

    def _build(self, doc_ids: list[str], docs: list[dict[str, Any]], identity: dict[str, Any]) -> None:
        texts = [passage_text(doc) for doc in docs]
        logger.info("Encoding %d documents into token vectors for MaxSim search", len(texts))
        if self.index_dir is None:
            self._set_store(TokenStore.from_chunks(doc_ids, self._encoded_chunks(texts), identity))
        else:
            remove_metadata(self.index_dir, ANN_META_FILE)  # it describes the vectors about to go
            self._set_store(TokenStore.write(self.index_dir, doc_ids, self._encoded_chunks(texts), identity))

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

    def _set_store(self, store: TokenStore) -> None:
        self.store = store
        self._ann.reset()  # new token vectors: an ANN index held in memory no longer describes them

    def _ensure_index(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        self._ensure_vectors(corpus)
        if self.mode == "ann":
            self._ensure_ann()

    def _ensure_vectors(self, corpus: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep the token vectors held, or reuse ``index_dir``'s, when they were encoded by this model
        from this corpus; else encode them (a misfit saved folder is reported as a WARNING)."""
        doc_ids, docs = sanitize_corpus(corpus)
        identity = self._model_identity(corpus_digest(doc_ids, docs))
        if self.store is not None and self.store.identity == identity and identity["fingerprint"] is not None:
            return
        if self.index_dir is not None and (self.index_dir / META_FILE).is_file():
            try:
                meta = self.read_meta(self.index_dir)
                saved = {key: meta.get(key) for key in IDENTITY_KEYS}
                if saved == identity and identity["fingerprint"] is not None:
                    self._set_store(TokenStore.read(self.index_dir))
                    logger.info("Reusing the MaxSim token vectors in %s", self.index_dir)
                    return
            except ArtifactError as err:
                logger.warning("Rebuilding the MaxSim index in %s: %s", self.index_dir, err)
            else:
                logger.warning(
                    "The MaxSim index in %s does not fit this search (%s); rebuilding it, and the new "
                    "index replaces it there",
                    self.index_dir,
                    describe_misfit(saved, identity),
                )
        self._build(doc_ids, docs, identity)

    def _ensure_ann(self) -> None:
        """Keep the ANN index held, or load ``index_dir``'s, when it was built for these token vectors
        and index settings; else build it (and save it to ``index_dir``)."""
        identity = self._ann.expected_identity(self.store)
        if self._ann.holds(identity):
            return
        folder = self.index_dir
        if folder is not None and (folder / ANN_META_FILE).is_file():
            try:
                if identity["fingerprint"] is not None and self._ann.load(folder, self.store, identity):
                    logger.info("Reusing the faiss %s token index in %s", identity["index_factory"], folder)
                    return
                logger.warning(
                    "The ANN index in %s does not fit this search (%s); rebuilding it, and the new index "
                    "replaces it there",
                    folder,
                    describe_misfit(read_ann_meta(folder), identity),
                )
            except ArtifactError as err:
                logger.warning("Rebuilding the ANN index in %s: %s", folder, err)
        index = self._build_ann(identity)
        token_docs = self.store.token_docs()
        if folder is not None:
            self._ann.save(folder, index, token_docs, identity)
        self._ann.set(index, token_docs, identity)

    def _build_ann(self, identity: dict[str, Any]) -> Any:
        """A trained faiss inner-product index holding every token vector (row i = token i)."""
        return self._ann.build(self.store, identity)

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
            block = self.store.token_block(range(start, end), device)  # read and converted once per chunk
            lens = torch.as_tensor(self.doclens[start:end], device=device)
            index = torch.arange(start, end, device=device)
            for q_start in range(0, n_queries, self.query_batch_size):
                rows = slice(q_start, q_start + self.query_batch_size)
                scores = packed_maxsim(q_vectors[rows], q_mask[rows], block, lens)
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
            candidates = self._ann.candidates(q, qm, len(self.doc_ids))
            union = np.unique(np.concatenate(candidates)) if candidates else np.zeros(0, dtype=np.int64)
            # the union's token vectors are read once per chunk; each query is scored against its own
            # candidates only (one query's similarities: its candidates' tokens x q_len)
            for start, end in self._chunks(max(q_len, dim), self.doclens[union]):
                chunk = union[start:end]
                block = self.store.token_block(chunk, device)
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
                    scores = packed_maxsim(
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


def _check_settings(
    *,
    mode: str,
    batch_size: int,
    query_batch_size: int,
    corpus_chunk_size: int,
    max_scores_elements: int,
    candidates_per_token: int | None,
    nprobe: int,
    min_ivfpq_vectors: int,
    train_size: int,
    nlist: int | None,
    pq_m: int | None,
    index_factory: str | None,
    use_gpu: bool,
) -> None:
    """:class:`ConfigError` for a :class:`MaxSimSearch` setting that cannot work, before any encoding."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    for name, value in (
        ("batch_size", batch_size),
        ("query_batch_size", query_batch_size),
        ("corpus_chunk_size", corpus_chunk_size),
        ("max_scores_elements", max_scores_elements),
        ("candidates_per_token", 1 if candidates_per_token is None else candidates_per_token),
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
        raise ConfigError("nlist and pq_m shape the default IVF-PQ index; with index_factory leave them out")
    if use_gpu:
        if mode != "ann":
            raise ConfigError(
                "use_gpu moves the faiss index of mode='ann' to the GPU; exact MaxSim runs on `device`"
            )
        faiss = import_faiss()
        if faiss.get_num_gpus() == 0:
            raise ConfigError(
                "use_gpu=True but faiss-gpu is not available (no GPU visible to faiss); "
                f"there is no beir-peft[gpu] extra, since faiss-gpu-cu12 cannot sit beside faiss-cpu: replace it "
                f"({GPU_FAISS_COMMAND}) or search on CPU"
            )
        if (candidates_per_token or 0) > GPU_MAX_K or nprobe > GPU_MAX_K:
            raise ConfigError(
                f"faiss-gpu searches at most {GPU_MAX_K} neighbours and lists; got "
                f"candidates_per_token={candidates_per_token}, nprobe={nprobe}"
            )


def _merge_top_k(
    best_scores: torch.Tensor, best_index: torch.Tensor, scores: torch.Tensor, index: torch.Tensor
) -> None:
    """Merge ``scores`` of documents ``index`` into the running top-k ``best_*`` (views, in place)."""
    merged_scores = torch.cat([best_scores, scores], dim=1)
    merged_index = torch.cat([best_index, index], dim=1)
    top = merged_scores.topk(best_scores.shape[1], dim=1)
    best_scores.copy_(top.values)
    best_index.copy_(merged_index.gather(1, top.indices))


def _progress(items, show: bool, desc: str):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)
