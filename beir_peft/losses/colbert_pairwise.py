"""ColBERT's training loss: softmax cross-entropy of MaxSim scores over (query, positive, negative).

Khattab & Zaharia 2020, section 3.4, as used for PT2-ColBERT by Tam et al. 2022, appendix B.2: for
each triple the positive and the negative passage are scored by MaxSim and the loss is the
cross-entropy of the positive under a softmax over the two (``in_batch_negatives=False``, the
papers' default). With ``in_batch_negatives=True`` every passage of the batch (other queries'
positives and negatives) is a candidate as well, as in DPR.

Like :class:`~beir_peft.losses.DualEncoderMNRLoss`, this is sentence-transformers'
``MultipleNegativesRankingLoss`` with a different way of turning columns into scores.
Input columns: ``(query, positive)`` (in-batch only) or ``(query, positive, negative_1, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from ..errors import ConfigError
from ..models.base import PASSAGE, QUERY
from ..scores import maxsim, pairwise_maxsim


class ColBERTPairwiseLoss(MultipleNegativesRankingLoss):
    """Cross-entropy over MaxSim scores of each query's positive and negatives.

    Args:
        model: ``model(features, side) -> (vectors, mask)``, e.g. ``PT2ColBERT(...).module``.
        in_batch_negatives: also score every other passage of the batch.
        scale: multiplier on the MaxSim scores before the softmax (ColBERT: 1; MaxSim of
            normalised vectors already spans ``[-Lq, Lq]``).
    """

    def __init__(
        self,
        model: Callable[[dict[str, torch.Tensor], str], tuple[torch.Tensor, torch.Tensor]],
        in_batch_negatives: bool = False,
        scale: float = 1.0,
    ):
        super().__init__(model, scale=scale)
        self.in_batch_negatives = in_batch_negatives

    def forward(
        self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ConfigError("ColBERT training needs (query, positive[, negatives]) columns")
        if len(features) == 2 and not self.in_batch_negatives:
            raise ConfigError(
                "pairwise ColBERT training needs a negative per query (mine hard negatives, or use in-batch negatives)"
            )
        q_vectors, q_mask = self.model(features[0], QUERY)
        docs = [self.model(f, PASSAGE) for f in features[1:]]
        n = q_vectors.shape[0]
        if self.in_batch_negatives:
            scores = torch.cat([maxsim(q_vectors, q_mask, d, m) for d, m in docs], dim=1)  # (n, n * columns)
            target = torch.arange(n, device=scores.device)
        else:
            scores = torch.stack(
                [pairwise_maxsim(q_vectors, q_mask, d, m) for d, m in docs], dim=1
            )  # (n, columns)
            target = torch.zeros(n, dtype=torch.long, device=scores.device)
        return torch.nn.functional.cross_entropy(self.scale * scores, target)

    def get_config_dict(self) -> dict:
        return {"scale": self.scale, "in_batch_negatives": self.in_batch_negatives}
