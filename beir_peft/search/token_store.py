"""The float16 token store of a late-interaction corpus, in memory or in a folder, and its file format.

Every document is its kept token vectors (punctuation and padding removed by the model), stored one
document after another as float16, either in memory or, written to a folder, memory-mapped::

    folder/
      maxsim.json      {"format", "kind", "dim", "num_docs", "num_tokens", "model", "fingerprint",
                        "corpus_sha256", "vectors_bytes", "doc_ids"}   (written last: a folder
                        with it is complete)
      doclens.npy      int64 (num_docs,): token vectors per document, in doc_ids order
      vectors.f16      raw float16 (num_tokens, dim), documents one after another

``identity`` is what the vectors were encoded by and from: the model's description and
``fingerprint`` (its config and every weight, :mod:`beir_peft.models.fingerprint`) and
``corpus_sha256`` (the corpus' ids *and* texts, :func:`~beir_peft.search.corpus.corpus_digest`).
Every file is written atomically (:mod:`beir_peft.io`); no pickle is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArtifactError
from ..io import atomic_open, write_json_atomic
from .index_files import read_index_meta, remove_metadata, save_npy_atomic

#: a child of MaxSimSearch's logger, so that configuring "beir_peft.search.maxsim" covers it too
logger = logging.getLogger("beir_peft.search.maxsim.token_store")

META_FILE = "maxsim.json"
DOCLENS_FILE = "doclens.npy"
VECTORS_FILE = "vectors.f16"
FORMAT_VERSION = 1
KIND = "maxsim-exact"
#: the keys of ``maxsim.json`` that say what the vectors were encoded by and from
IDENTITY_KEYS = ("model", "fingerprint", "corpus_sha256")

#: what ``encode_doc_token_lists`` yields per chunk of documents: one ``(tokens, dim)`` tensor each
EncodedChunks = Iterable[Sequence[torch.Tensor]]


class TokenStore:
    """The token vectors of a corpus: ``vectors`` float16 ``(num_tokens, dim)``, document ``j``'s
    rows being ``offsets[j]:offsets[j + 1]`` (``doclens[j]`` of them), in ``doc_ids`` order.

    Build one with :meth:`from_chunks` (in memory), :meth:`write` (into a folder, then
    memory-mapped) or :meth:`read` (a folder written before).
    """

    def __init__(
        self, doc_ids: Sequence[str], doclens: np.ndarray, vectors: np.ndarray, identity: dict[str, Any]
    ):
        self.doc_ids = list(doc_ids)
        self.doclens = doclens
        self.offsets = np.concatenate([[0], np.cumsum(doclens)]).astype(np.int64)
        self.vectors = vectors  # float16 (num_tokens, dim), in memory or memory-mapped
        self.identity = identity
        #: the ANN part of a folder records it: a token -> document map is only valid for this order
        self.doc_ids_digest = hashlib.sha256(json.dumps(self.doc_ids).encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_chunks(
        cls, doc_ids: Sequence[str], chunks: EncodedChunks, identity: dict[str, Any]
    ) -> TokenStore:
        """A store in memory of the encoded ``chunks`` of the documents ``doc_ids``."""
        parts, lens = [], []
        for vectors in chunks:
            parts.extend(v.numpy().astype(np.float16) for v in vectors)
            lens.extend(len(v) for v in vectors)
        return cls(doc_ids, np.asarray(lens, dtype=np.int64), np.concatenate(parts), identity)

    @classmethod
    def write(
        cls, folder: Path, doc_ids: Sequence[str], chunks: EncodedChunks, identity: dict[str, Any]
    ) -> TokenStore:
        """Write the encoded ``chunks`` into ``folder`` chunk by chunk (memory stays bounded), then
        read the folder back memory-mapped."""
        folder.mkdir(parents=True, exist_ok=True)
        remove_metadata(folder, META_FILE)
        lens: list[int] = []
        dim = None
        with atomic_open(folder / VECTORS_FILE, "wb") as handle:
            for vectors in chunks:
                for v in vectors:
                    dim = v.shape[1]
                    np.ascontiguousarray(v.numpy(), dtype=np.float16).tofile(handle)
                    lens.append(len(v))
        doclens = np.asarray(lens, dtype=np.int64)
        save_npy_atomic(folder / DOCLENS_FILE, doclens)
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
        return cls.read(folder)

    # ------------------------------------------------------------------ a saved store
    @staticmethod
    def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
        """Read and check ``maxsim.json``; :class:`ArtifactError` when missing or malformed."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise ArtifactError(f"no MaxSim index metadata at {path}")
        meta = read_index_meta(
            path,
            "MaxSim",
            ("format", "kind", "dim", "num_docs", "num_tokens", "doc_ids", "vectors_bytes"),
            KIND,
            FORMAT_VERSION,
        )
        if not isinstance(meta["doc_ids"], list) or len(meta["doc_ids"]) != meta["num_docs"]:
            raise ArtifactError(f"{path}: doc_ids do not match num_docs={meta['num_docs']}")
        return meta

    @classmethod
    def read(cls, folder: Path) -> TokenStore:
        """The store saved in ``folder``, its vectors memory-mapped; :class:`ArtifactError` when a
        file is missing or does not match the metadata."""
        meta = cls.read_meta(folder)
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
        identity = {key: meta.get(key) for key in IDENTITY_KEYS}
        return cls(meta["doc_ids"], doclens.astype(np.int64), vectors, identity)

    # ------------------------------------------------------------------ reading vectors
    def token_block(self, docs: range | np.ndarray, device: torch.device) -> torch.Tensor:
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

    def token_docs(self) -> np.ndarray:
        """int32 ``(num_tokens,)``: the document (position in ``doc_ids``) of each token vector."""
        return np.repeat(np.arange(len(self.doclens), dtype=np.int32), self.doclens)

    def sample(self, size: int, seed: int) -> np.ndarray:
        """Float32 rows of ``size`` token vectors drawn uniformly without replacement (seeded; all of
        them, in order, when ``size`` is not smaller than the store)."""
        num_vectors = len(self.vectors)
        if size >= num_vectors:
            return np.asarray(self.vectors, dtype=np.float32)
        rows = np.sort(np.random.default_rng(seed).choice(num_vectors, size=size, replace=False))
        return np.asarray(self.vectors[rows], dtype=np.float32)
