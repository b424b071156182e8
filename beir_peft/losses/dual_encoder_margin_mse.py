"""MarginMSE for an asymmetric dual encoder: GPL's training objective.

Hofstätter et al. 2020 (MarginMSE), as used by GPL (Wang et al. 2022, seed 002, section 3): for a
(query, positive, negative) triple with a teacher margin ``m = CE(q, pos) - CE(q, neg)``, the loss is
the mean over the batch of ``(sim(q, pos) - sim(q, neg) - m)^2``. (The paper prints the margin
with a stray minus sign; the released code and this loss use the positive MSE above.)

This is sentence-transformers' ``MarginMSELoss``; the subclass only changes *how embeddings are
made* (column 0 on the query side, the others on the passage side) and names the similarity:

* ``"dot"`` (default, the paper): the dot product of the embeddings as they come;
* ``"cosine"``: the cosine, computed on L2-normalised embeddings. GPL's released code offers
  ``cos_sim`` but scores its margins with an un-normalised dot product; here ``cosine`` really is
  the cosine, and teacher margins on the cross-encoder's logit scale are then far outside its
  [-2, 2] range (GPL's ``rescale_range`` option exists for that: see ``beir_peft.methods.gpl``).

Input columns: ``(query, positive, negative)``; labels: the margins, shape ``(batch,)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from sentence_transformers.sentence_transformer.losses import MarginMSELoss
from sentence_transformers.util import pairwise_cos_sim, pairwise_dot_score

from ..errors import ConfigError
from ..models.base import PASSAGE, QUERY

#: similarity name -> its pairwise score of two (batch, dim) embedding matrices
SIMILARITY_FUNCTIONS = {"dot": pairwise_dot_score, "cosine": pairwise_cos_sim}
SIMILARITIES = tuple(SIMILARITY_FUNCTIONS)


class DualEncoderMarginMSELoss(MarginMSELoss):
    """MarginMSELoss whose query and passages go through different sides of the retriever.

    Args:
        model: a callable ``model(features, side) -> (batch, dim)``, e.g. ``retriever.module``.
        similarity: ``"dot"`` (default) or ``"cosine"`` (normalised; see the module docstring).

    Example::

        loss = DualEncoderMarginMSELoss(retriever.module)
        value = loss([queries, positives, negatives], labels=torch.tensor(margins))
    """

    def __init__(
        self, model: Callable[[dict[str, torch.Tensor], str], torch.Tensor], similarity: str = "dot"
    ):
        if similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {sorted(SIMILARITIES)}, got {similarity!r}")
        super().__init__(model, similarity_fct=SIMILARITY_FUNCTIONS[similarity])
        self.similarity = similarity

    def forward(
        self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor
    ) -> torch.Tensor:
        features = list(sentence_features)
        if len(features) < 3:
            raise ConfigError("MarginMSE needs (query, positive, negative) columns")
        embeddings = [self.model(features[0], QUERY)] + [self.model(f, PASSAGE) for f in features[1:]]
        return self.compute_loss_from_embeddings(
            embeddings, labels.to(embeddings[0].device, embeddings[0].dtype)
        )

    def get_config_dict(self) -> dict[str, str]:
        return {"similarity": self.similarity}
