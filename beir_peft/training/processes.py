"""The processes a run trains on: one, or the group that ``torchrun`` / ``accelerate launch`` started.

accelerate joins the launcher's process group from its environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ...): NCCL on GPUs. On a machine without CUDA it does so only when asked for the
CPU (its ``cpu`` flag, which ``accelerate launch --cpu`` sets); :func:`new_accelerator` asks for it
whenever several processes were launched there, so ``torchrun --nproc_per_node 2`` trains on 2
gloo processes instead of 2 unrelated ones. :func:`process_group` is the same group for work
outside the training loop (GPL's stages split by rank).

Once accelerate has joined the group it is torch.distributed's default group, so the searches below
this layer (:mod:`beir_peft.search.ranks`: rank, world size, barrier; no accelerate) split their
work across the same processes: the one group, seen from the layer that needs accelerate and from
the one that must not.
"""

from __future__ import annotations

import os
from typing import Any


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _on_cpu() -> bool:
    import torch

    return launched_processes() > 1 and not torch.cuda.is_available()


def new_accelerator(**kwargs: Any):
    """accelerate's ``Accelerator(**kwargs)`` on the launcher's processes (gloo on the CPU).

    ``mixed_precision="fp16"`` without a CUDA GPU is refused in one line (accelerate's own error is
    a traceback; bf16 is the CPU's half precision)."""
    import torch
    from accelerate import Accelerator

    from ..errors import ConfigError

    if kwargs.get("mixed_precision") == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision fp16 needs a CUDA GPU; on a CPU train with bf16 (or no)")
    if _on_cpu():
        kwargs["cpu"] = True
    # accelerate keeps one AcceleratorState per process and refuses another mixed precision later;
    # each run sets its own (the process group, PartialState, is kept)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return Accelerator(**kwargs)


def process_group():
    """accelerate's ``PartialState`` of the launcher's processes (``process_index``,
    ``num_processes``, ``is_main_process``, ``device``, ``wait_for_everyone()``)."""
    from accelerate import PartialState

    return PartialState(cpu=_on_cpu())


__all__ = ["launched_processes", "new_accelerator", "process_group"]
