"""A corpus' single-vector embeddings on disk, as ``.npy`` shards read back memory-mapped.

Folder layout (written by :func:`encode_shards`, read by :class:`VectorShards`)::

    vectors.json      {"format", "kind", "model", "fingerprint", "corpus_sha256", "order_sha256", "dtype",
                       "shard_size", "num_docs", "num_shards"}: what the vectors were encoded for
    doc_ids.json      the doc ids, in row order (shard i holds rows i*shard_size ...)
    shard-00000.npy   (rows, dim) float32 or float16, numpy's own format (never pickle)

The identity (``vectors.json``) is written *first* and each shard atomically (temporary sibling,
fsync, rename), so a shard that exists is complete: a run killed half way resumes by encoding only
the missing shards. An identity that differs (other weights or settings, another corpus, dtype or
shard size) removes every shard first. A model without a ``fingerprint()`` never reuses shards.

Under torch.distributed (:mod:`.ranks`) rank r encodes shards r, r+N, ...; the call is collective.
The vectors are what ``encode_corpus`` returns (not normalised): the searcher normalises a chunk at
a time for ``cos_sim``, as BEIR's exact search does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import ArtifactError, ConfigError
from ..io import write_json_atomic
from . import ranks
from .corpus import corpus_digest, describe_differences, model_description, model_fingerprint
from .index_files import read_index_meta, save_npy_atomic

logger = logging.getLogger(__name__)

META_FILE = "vectors.json"
IDS_FILE = "doc_ids.json"
KIND = "dense-vectors"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16")
#: the most passages a shard holds by default (what one ``encode_corpus`` call holds in memory)
DEFAULT_SHARD_SIZE = 50000
#: the fewest passages a default shard holds, and how many shards a corpus is cut into at least
#: (corpus permitting), so that up to that many processes share the encoding
MIN_SHARD_SIZE, TARGET_SHARDS = 256, 64


def default_shard_size(num_docs: int) -> int:
    """Passages per shard for a corpus of ``num_docs``: ``num_docs / 64`` within 256..50,000.

    A function of the corpus size alone, so shards encoded on any number of processes are reused
    on any other: SciFact's 5,183 abstracts give 21 shards of 256 (2 processes encode 11 and 10),
    100K passages 64 shards of 1,563, MS MARCO's 8.8M shards of 50,000."""
    return min(DEFAULT_SHARD_SIZE, max(MIN_SHARD_SIZE, -(-int(num_docs) // TARGET_SHARDS)))


def shard_name(index: int) -> str:
    """``shard-00012.npy``."""
    return f"shard-{index:05d}.npy"


class VectorShards:
    """The shards of one folder, memory-mapped: ``doc_ids`` and an iterator over row chunks."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.meta = read_index_meta(
            self.folder / META_FILE, "vectors", ("kind", "format", "num_docs", "num_shards", "shard_size"),
            kind=KIND, version=FORMAT_VERSION,
        )  # fmt: skip
        try:
            self.doc_ids: list[str] = json.loads((self.folder / IDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read the doc ids of {self.folder}: {err}") from err
        if len(self.doc_ids) != self.meta["num_docs"]:
            raise ArtifactError(
                f"{self.folder}: {len(self.doc_ids)} doc ids for {self.meta['num_docs']} docs"
            )

    def shard(self, index: int) -> np.ndarray:
        """Shard ``index`` as a read-only memory map, ``(rows, dim)``."""
        path = self.folder / shard_name(index)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read vector shard {path}: {err}") from err
        if array.ndim != 2 or array.shape[0] != _shard_rows(index, self.meta):
            raise ArtifactError(f"vector shard {path} has shape {array.shape}")
        return array

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, (<= rows, dim) memory-mapped view)`` over every shard in order."""
        for index in range(self.meta["num_shards"]):
            shard = self.shard(index)
            offset = index * self.meta["shard_size"]
            for start in range(0, shard.shape[0], rows):
                yield offset + start, shard[start : start + rows]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the sorted global ``rows``, ``(len(rows), dim)`` float32 (e.g. a training sample)."""
        size = self.meta["shard_size"]
        parts = []
        for index in range(self.meta["num_shards"]):
            mine = rows[(rows >= index * size) & (rows < (index + 1) * size)] - index * size
            if len(mine):
                parts.append(np.asarray(self.shard(index)[mine], dtype=np.float32))
        return np.concatenate(parts)

    def nbytes(self) -> int:
        """Bytes of all the shards' vectors (what a memory-mapped search may page in)."""
        return sum(os.path.getsize(self.folder / shard_name(i)) for i in range(self.meta["num_shards"]))


def expected_identity(
    model: Any, doc_ids: Sequence[str], docs: Sequence[Mapping[str, Any]], dtype: str, shard_size: int
) -> dict[str, Any]:
    """What shards must have been encoded for: model fingerprint, corpus, row order, dtype and shard
    size (a resumed run encodes the missing shards in the saved row order)."""
    return {
        "fingerprint": model_fingerprint(model),
        "corpus_sha256": corpus_digest(doc_ids, docs),
        "order_sha256": hashlib.sha256(json.dumps(list(doc_ids)).encode("utf-8")).hexdigest(),
        "dtype": dtype,
        "shard_size": int(shard_size),
        "num_docs": len(doc_ids),
    }


def encode_shards(
    model: Any,
    doc_ids: Sequence[str],
    docs: Sequence[Mapping[str, Any]],
    folder: str | os.PathLike,
    *,
    batch_size: int = 128,
    dtype: str = "float32",
    shard_size: int | None = None,
    show_progress_bar: bool = True,
) -> VectorShards:
    """Encode the corpus ``(doc_ids, docs)`` (as :func:`~.corpus.sanitize_corpus` returns it) into
    ``folder``, skipping the shards encoded already for the same identity; the shards, memory-mapped.
    ``shard_size``: passages per shard (``None``: :func:`default_shard_size`).

    Collective under torch.distributed: every rank calls it, rank r encodes shards r, r+N, ...
    """
    if dtype not in DTYPES:
        raise ConfigError(f"vector dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_size is None:
        shard_size = default_shard_size(len(doc_ids))
    if shard_size < 1:
        raise ConfigError(f"shard_size must be positive, got {shard_size}")
    folder = Path(folder)
    identity = expected_identity(model, doc_ids, docs, dtype, shard_size)
    num_shards = -(-len(doc_ids) // shard_size)
    if ranks.is_main():
        _prepare_folder(folder, model, doc_ids, identity, num_shards)
    ranks.barrier()
    mine = range(ranks.rank(), num_shards, ranks.world_size())
    todo = [i for i in mine if not (folder / shard_name(i)).is_file()]
    if len(todo) < len(mine):
        logger.info("Reusing %d encoded vector shard(s) in %s", len(mine) - len(todo), folder)
    for index in tqdm(todo, desc="Encoding shards", disable=not show_progress_bar or len(todo) < 2):
        start = index * shard_size
        chunk = list(docs[start : start + shard_size])
        vectors = model.encode_corpus(
            chunk, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=False
        )
        vectors = _as_numpy(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(chunk):
            raise ValueError(f"encode_corpus returned shape {vectors.shape} for {len(chunk)} passages")
        save_npy_atomic(folder / shard_name(index), np.ascontiguousarray(vectors, dtype=dtype))
    ranks.barrier()
    return VectorShards(folder)


def _prepare_folder(
    folder: Path, model: Any, doc_ids: Sequence[str], identity: dict[str, Any], num_shards: int
) -> None:
    """Keep the folder's shards when its identity is ``identity``; else empty it and write the new one."""
    path = folder / META_FILE
    if path.is_file():
        try:
            saved = read_index_meta(path, "vectors", ("kind", "format"), kind=KIND, version=FORMAT_VERSION)
        except ArtifactError as err:
            saved, reason = None, str(err)
        if saved is not None and identity["fingerprint"] is not None:
            if all(saved.get(key) == value for key, value in identity.items()):
                return
            reason = describe_differences(saved, identity)
        elif saved is not None:
            reason = (
                f"{model_description(model)} has no fingerprint(), so nothing tells whether it encoded them"
            )
        logger.warning(
            "The vectors in %s do not fit this corpus and model (%s); encoding them again", folder, reason
        )
        for stale in folder.glob("shard-*.npy"):
            stale.unlink()
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("shard-*.npy"):  # shards without an identity: of nobody known
        stale.unlink()
    write_json_atomic(folder / IDS_FILE, list(doc_ids), indent=None)
    meta = {"format": FORMAT_VERSION, "kind": KIND, "model": model_description(model), **identity,
            "num_shards": num_shards}  # fmt: skip
    write_json_atomic(path, meta)


def _shard_rows(index: int, meta: Mapping[str, Any]) -> int:
    return min(meta["shard_size"], meta["num_docs"] - index * meta["shard_size"])


def _as_numpy(vectors: Any) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    return np.asarray(vectors)
