"""ART's loss: KL(teacher || student) over each question's retrieved passages.

Sachan et al. 2023 (ART, seed 003), section 2: for a question and its top-K retrieved passages, the
student distribution is the softmax of the dual encoder's scores divided by ``sqrt(hidden size)``
[code], the teacher distribution the softmax of the frozen language model's question
log-likelihoods, and the loss is ``KL(teacher || student)`` averaged over the batch. Both encoders
receive gradients (the passages are re-encoded with gradients).

This is sentence-transformers' ``DistillKLDivLoss`` with: column 0 encoded on the query side and
the passages on the passage side (one forward over all ``batch x K`` of them), the student
temperature ``sqrt(hidden)`` (or an explicit one: docs/art.md, "The student's scale"), the teacher temperature 1, and without the ``temperature^2`` factor
sentence-transformers applies for classic distillation (ART's loss has none; with a temperature of
``sqrt(384)`` it would multiply the loss, and so the step size, by 384).

Input: ``[query_features, passage_features]`` where the passages are ``batch x K`` rows, row
``b * K + k`` the ``k``-th passage of question ``b``; labels: teacher scores ``(batch, K)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
from sentence_transformers.util import pairwise_dot_score

from ..errors import ConfigError
from ..models.base import PASSAGE, QUERY


class ARTDistillKLLoss(DistillKLDivLoss):
    """KL(teacher || student) over K passages per question; see the module docstring.

    Args:
        model: ``model(features, side) -> (n, dim)``, e.g. ``retriever.module``.
        hidden_size: the student's embedding size; scores are divided by its square root.
        temperature: divide the scores by this instead (``None``: ``sqrt(hidden_size)``, [code]).
    """

    def __init__(
        self,
        model: Callable[[dict[str, torch.Tensor], str], torch.Tensor],
        hidden_size: int,
        temperature: float | None = None,
    ):
        if hidden_size < 1:
            raise ConfigError(f"hidden_size must be >= 1, got {hidden_size}")
        if temperature is not None and not temperature > 0:
            raise ConfigError(f"the student temperature must be > 0, got {temperature}")
        super().__init__(
            model,
            similarity_fct=pairwise_dot_score,
            student_temperature=math.sqrt(hidden_size) if temperature is None else float(temperature),
            teacher_temperature=1.0,
        )
        self.hidden_size = hidden_size

    def forward(
        self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor
    ) -> torch.Tensor:
        query_features, passage_features = list(sentence_features)
        queries = self.model(query_features, QUERY)
        passages = self.model(passage_features, PASSAGE)
        batch, k = labels.shape
        if passages.shape[0] != batch * k:
            raise ConfigError(f"expected {batch} x {k} passages, got {passages.shape[0]}")
        columns = list(passages.view(batch, k, -1).unbind(dim=1))
        return self.compute_loss_from_embeddings(
            [queries, *columns], labels.to(queries.device, queries.dtype)
        )

    def compute_loss_from_embeddings(
        self, embeddings: list[torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor:
        return super().compute_loss_from_embeddings(embeddings, labels) / self.student_temperature**2

    def get_config_dict(self) -> dict[str, float]:
        return {"hidden_size": self.hidden_size, "temperature": self.student_temperature}
