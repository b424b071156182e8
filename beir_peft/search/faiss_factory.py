"""faiss ``index_factory`` indexes for single-vector models: built, trained on a seeded sample, tuned.

:func:`build_factory_index` encodes the corpus to memory-mapped shards (:mod:`.vector_shards`, in a
temporary folder every rank sees), trains the index on ``train_size`` rows drawn with ``seed`` when
it needs training (IVF, PQ), then adds the vectors a chunk at a time: memory holds the index, the
training sample and one chunk. :func:`set_search_parameters` sets ``nprobe`` / ``efSearch`` through
faiss' ``ParameterSpace``, which reaches them inside wrapped indexes too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from ..errors import ConfigError
from . import ranks
from .index_files import faiss_message
from .vector_shards import encode_shards

logger = logging.getLogger(__name__)

#: vectors a trained index (IVF, PQ) is trained on at most: a seeded sample of the corpus
DEFAULT_TRAIN_SIZE = 100_000


def new_factory_index(dim: int, index_factory: str) -> faiss.Index:
    """``faiss.index_factory(dim, index_factory)`` with inner product; a one-line ConfigError if faiss refuses."""
    try:
        return faiss.index_factory(dim, index_factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ConfigError(
            f"faiss cannot build index_factory {index_factory!r}: {faiss_message(err)}"
        ) from err


def train_rows(num_docs: int, train_size: int, seed: int) -> np.ndarray:
    """The sorted rows an index is trained on: ``train_size`` of ``num_docs`` drawn with ``seed`` (all if fewer)."""
    if num_docs <= train_size:
        return np.arange(num_docs)
    return np.sort(np.random.default_rng(seed).choice(num_docs, size=train_size, replace=False))


def build_factory_index(
    model: Any,
    doc_ids: Sequence[str],
    docs: Sequence[Mapping[str, Any]],
    index_factory: str,
    *,
    embed: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    chunk_rows: int,
    train_size: int = DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    show_progress_bar: bool = True,
) -> tuple[faiss.Index, list[str]]:
    """``(index, doc ids in index order)`` over the corpus; ``embed`` turns ``(rows, dim)`` encoder
    output into what the index holds (float32, L2-normalised for cosine)."""
    with ranks.shared_temporary_folder() as folder:
        shards = encode_shards(
            model, doc_ids, docs, folder, batch_size=batch_size, shard_size=chunk_rows,
            show_progress_bar=show_progress_bar,
        )  # fmt: skip
        index = new_factory_index(shards.shard(0).shape[1], index_factory)
        if not index.is_trained:
            sample = embed(shards.rows(train_rows(len(doc_ids), train_size, seed)))
            logger.info(
                "Training the faiss index on %d of %d vectors (seed %d)", len(sample), len(doc_ids), seed
            )
            try:
                index.train(sample)
            except RuntimeError as err:
                raise ConfigError(
                    f"faiss cannot train {index_factory!r} on {len(sample)} vectors: {faiss_message(err)}"
                ) from err
        for _, chunk in shards.chunks(chunk_rows):
            index.add(embed(np.array(chunk, dtype=np.float32)))
        return index, shards.doc_ids


def set_search_parameters(
    index: faiss.Index, index_factory: str, nprobe: int | None, ef_search: int | None
) -> None:
    """``nprobe`` (IVF; ``None`` keeps faiss' 1) and ``efSearch`` (HNSW factories only) on ``index``."""
    space = faiss.ParameterSpace()
    wanted = {"nprobe": nprobe, "efSearch": ef_search if "HNSW" in index_factory else None}
    for name, value in wanted.items():
        if value is None:
            continue
        try:
            space.set_index_parameter(index, name, int(value))
        except RuntimeError as err:
            raise ConfigError(
                f"{name}: not a parameter of faiss index {index_factory!r} ({faiss_message(err)})"
            ) from err
