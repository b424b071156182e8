"""GPL: generative pseudo labeling for unsupervised domain adaptation (Wang et al. 2022, seed 002).

:func:`run_gpl` runs the whole resumable pipeline (:mod:`.pipeline`); its stages live in
:mod:`.sizing` (the 250K rule), :mod:`.query_generation`, :mod:`.negatives`, :mod:`.pseudo_labels`
and :mod:`.tsdae`. The training loss is :class:`beir_peft.losses.DualEncoderMarginMSELoss`.
"""

from .pipeline import PRESETS, GPLConfig, run_gpl
from .sizing import gpl_sizing

__all__ = ["PRESETS", "GPLConfig", "gpl_sizing", "run_gpl"]
