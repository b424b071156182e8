"""GPL: generative pseudo labeling for unsupervised domain adaptation (Wang et al. 2022, seed 002).

:func:`run_gpl` runs the whole resumable pipeline (:mod:`.pipeline`); its stages live in
:mod:`.sizing` (the 250K rule), :mod:`.query_generation`, :mod:`.negatives`, :mod:`.pseudo_labels`
(the teacher interface and the cross-encoder), :mod:`.oracle` (a qrels teacher for testing the
signal) and :mod:`.tsdae`. The training loss is :class:`beir_peft.losses.DualEncoderMarginMSELoss`.
:func:`run_qgen` (:mod:`.qgen`) is GPL's baseline QGen on the same generated queries.
"""

from .oracle import DenseMarginLabeler, OracleLabeler, oracle_queries
from .pipeline import PRESETS, GPLConfig, QueryStageConfig, run_gpl
from .pseudo_labels import MarginLabeler, PseudoLabeler
from .qgen import QGenConfig, run_qgen
from .sizing import gpl_sizing

__all__ = [
    "PRESETS",
    "DenseMarginLabeler",
    "GPLConfig",
    "MarginLabeler",
    "OracleLabeler",
    "PseudoLabeler",
    "QGenConfig",
    "QueryStageConfig",
    "gpl_sizing",
    "oracle_queries",
    "run_gpl",
    "run_qgen",
]
