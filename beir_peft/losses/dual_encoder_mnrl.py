"""DPR's in-batch negative loss for an asymmetric (query side / passage side) dual encoder.

Karpukhin et al. 2020 (DPR), section 3.2, as used by Tam et al. 2022 (seed 000), section 5: the
negative log-likelihood of the positive passage against the other passages of the batch and, when
given, mined hard negatives. This is sentence-transformers' ``MultipleNegativesRankingLoss``; the
subclass only changes *how embeddings are made*: column 0 is encoded on the query side (query
prompt), every other column on the passage side.

Input columns: ``(query, positive)`` or ``(query, positive, negative_1, ..., negative_n)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import dot_score

from ..models.base import PASSAGE, QUERY


class DualEncoderMNRLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss whose anchor and candidates go through different sides.

    Args:
        model: a callable ``model(features, side) -> (batch, dim)``, e.g. ``retriever.module``
            (or its accelerate wrapper).
        scale: multiplier on the similarities before the softmax (1 / temperature). The paper's
            DPR uses 1 with unnormalised [CLS] vectors; for a backbone whose embeddings are
            L2-normalised (all-MiniLM-L6-v2) similarities lie in [-1, 1] and 20 (sentence-
            transformers' default, temperature 0.05) is needed for a useful gradient.
        similarity_fct: ``dot_score`` (the paper) or ``cos_sim``.
        gather_across_devices: on several processes, score each process's queries against the
            passages of every process (gathered with gradient, sentence-transformers' own option),
            so ``N`` processes with batch ``B`` compute the loss of one process with ``N * B``.

    Example::

        loss = DualEncoderMNRLoss(retriever.module, scale=20.0)
        value = loss([tokenised_queries, tokenised_positives], labels=None)
    """

    def __init__(
        self,
        model: Callable[[dict[str, torch.Tensor], str], torch.Tensor],
        scale: float = 20.0,
        similarity_fct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = dot_score,
        gather_across_devices: bool = False,
    ):
        super().__init__(
            model, scale=scale, similarity_fct=similarity_fct, gather_across_devices=gather_across_devices
        )

    def forward(
        self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = list(sentence_features)
        embeddings = [self.model(features[0], QUERY)] + [self.model(f, PASSAGE) for f in features[1:]]
        return self.compute_loss_from_embeddings(embeddings, labels)
