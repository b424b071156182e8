"""What every saved index folder shares: its JSON metadata, atomic faiss and numpy writes, faiss' errors.

A folder written by :class:`~beir_peft.search.faiss_search.FaissSearch` or
:class:`~beir_peft.search.maxsim.MaxSimSearch` is complete once its metadata file exists: the
metadata is removed first (:func:`remove_metadata`) and written last, and every file in between
goes through :mod:`beir_peft.io` (temporary sibling, fsync, ``os.replace``), so a run killed half
way leaves a folder that is rebuilt rather than a stale index paired with new ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from ..io import atomic_open
from .corpus import describe_differences

#: faiss on the GPU instead of faiss-cpu: both wheels install the one ``faiss`` module, so the CPU one
#: goes first (an extra could only add the GPU wheel beside it)
GPU_FAISS_COMMAND = 'pip uninstall -y faiss-cpu faiss-gpu-cu12 && pip install "faiss-gpu-cu12>=1.8"'


def read_index_meta(
    path: Path,
    label: str,
    required: tuple[str, ...],
    kind: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Read an index's JSON metadata and check that it has the ``required`` fields and, when ``kind``
    is given, that kind and a format no newer than ``version``; :class:`ArtifactError` otherwise
    (``label`` names the index in the message: ``"faiss"``, ``"MaxSim"``, ``"ANN"``)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read {label} index metadata {path}: {err}") from err
    missing = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ArtifactError(f"{label} index metadata {path} lacks {missing}")
    if kind is not None and (meta["kind"] != kind or meta["format"] > version):
        raise ArtifactError(f"{path}: not a format-{version} {kind} index")
    return meta


def remove_metadata(folder: Path, *names: str) -> None:
    """Remove the metadata files ``names`` of ``folder``: the folder is incomplete until new ones land."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)


def write_faiss_index_atomic(index: Any, path: Path) -> None:
    """``faiss.write_index(index, path)``, atomically (temporary sibling, fsync, rename)."""
    faiss = import_faiss()
    with atomic_open(path, "wb") as handle:
        faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` (no pickle), atomically."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def describe_misfit(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """Why a saved part (identity ``saved``) does not serve ``expected``, for the rebuild warning."""
    if expected["fingerprint"] is None:
        return f"{expected['model']} has no fingerprint(), so nothing tells whether it built the index"
    return describe_differences(saved, expected)


def import_faiss():
    """faiss, imported when an index needs it."""
    import faiss

    return faiss


def faiss_message(err: BaseException) -> str:
    """faiss' own reason, without its C++ function signature and source location."""
    text = " ".join(str(err).split())
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*?' failed: )?", "", text)
