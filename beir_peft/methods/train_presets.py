"""The old import path of :mod:`beir_peft.training.presets` (``train --preset``'s paper settings)."""

from ..training.presets import PT2_DPR_PAPER, TRAIN_PRESETS, TrainPreset, train_preset

__all__ = ["PT2_DPR_PAPER", "TRAIN_PRESETS", "TrainPreset", "train_preset"]
