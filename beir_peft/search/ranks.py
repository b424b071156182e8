"""The processes a search runs on: torch.distributed's rank and world size, when a group is initialised.

``torchrun --nproc_per_node N`` (or ``accelerate launch``) starts N processes and sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_from_env` joins them into one process group (gloo on
CPU, NCCL on GPUs). Without a group every function here describes one process (rank 0 of 1), so
single-process code needs no branch.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process' rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes the outputs (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for in one process)."""
    if is_distributed():
        dist.barrier()


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE`` > 1).

    Returns whether this process is now one of several. The backend is NCCL when CUDA is there,
    else gloo; a group initialised already is used as it is.
    """
    if is_distributed():
        return world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device_index())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    atexit.register(_leave)
    return True


def _leave() -> None:
    """Leave the process group at exit (torch warns about a group never destroyed)."""
    if is_distributed():
        dist.destroy_process_group()


def local_device_index() -> int:
    """``LOCAL_RANK``: the GPU this process uses on its node (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def broadcast_from_main(value):
    """Rank 0's ``value`` on every rank (a picklable Python object, e.g. a path string)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank (``[value]`` in one process)."""
    if not is_distributed():
        return [value]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@contextlib.contextmanager
def shared_temporary_folder(prefix: str = "beir_peft_vectors_") -> Iterator[Path]:
    """A temporary folder every rank sees (rank 0 creates and finally removes it; one node only)."""
    path = tempfile.mkdtemp(prefix=prefix) if is_main() else None
    path = Path(broadcast_from_main(path))
    try:
        yield path
    finally:
        barrier()
        if is_main():
            shutil.rmtree(path, ignore_errors=True)
