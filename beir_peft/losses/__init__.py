"""Losses: subclasses of sentence-transformers losses, one per file, each citing its paper."""

from .art_kl import ARTDistillKLLoss
from .colbert_pairwise import ColBERTPairwiseLoss
from .dual_encoder_margin_mse import DualEncoderMarginMSELoss
from .dual_encoder_mnrl import DualEncoderMNRLoss

__all__ = ["ARTDistillKLLoss", "ColBERTPairwiseLoss", "DualEncoderMNRLoss", "DualEncoderMarginMSELoss"]
