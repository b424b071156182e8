"""DDR: disentangled relevance (REM) and domain (DAM) modules (Zhan et al. 2022, seed 004).

Stages: :func:`train_dam` (MLM on a corpus, :mod:`.dam`), :func:`train_rem` (the relevance module
on a frozen source DAM, :mod:`.rem`), :func:`assemble` (the REM on a target DAM, LoRA merged when
loaded). The REM is a tuned retriever of method ``ddr`` (:class:`beir_peft.TunedRetriever`).
"""

from .dam import DAMConfig, is_dam, masking_collator, read_dam, train_dam
from .rem import assemble, build_rem, train_rem

__all__ = [
    "DAMConfig",
    "assemble",
    "build_rem",
    "is_dam",
    "masking_collator",
    "read_dam",
    "train_dam",
    "train_rem",
]
