"""The trained part of a retriever as a state dict, and its strict loading (shared by every model class)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ArtifactError
from .configs import RetrieverConfig


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Only the tensors that train (``requires_grad``), under their module names."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], where: str, method: str
) -> None:
    """Copy ``state`` into ``module``'s trainable tensors strictly.

    Every expected name must be present with its exact shape and nothing else may be: a mismatch is
    an :class:`ArtifactError` naming ``where`` (never a silently random prefix, the trap of loading
    with ``strict=False``).
    """
    expected = {k: v for k, v in module.named_parameters() if v.requires_grad}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) (e.g. {unexpected[0]})")
        raise ArtifactError(
            f"{where}: does not fit a {method} retriever on this backbone: {'; '.join(parts)}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ArtifactError(
                f"{where}: tensor {name} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in state.items():
            expected[name].copy_(tensor.to(expected[name].dtype))


class TrainableStateMixin:
    """Parameter counts, state dicts, saving and the one-line description of a retriever with
    ``module``, ``method`` and ``config`` (a :class:`~beir_peft.models.configs.RetrieverConfig`)."""

    module: nn.Module
    method: str
    config: RetrieverConfig

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def total_parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors, under names stable across save/load."""
        return trainable_state(self.module)

    def load_trainable_state_dict(self, state: Mapping[str, torch.Tensor], where: str = "weights") -> None:
        """Load trained tensors strictly (see :func:`load_trainable_state`)."""
        load_trainable_state(self.module, state, where, self.method)

    def save(self, path, **card) -> None:
        """Write a retriever folder (config.json, weights.safetensors, README.md); see ``artifacts.save_retriever``."""
        from ..artifacts import save_retriever

        save_retriever(self, path, **card)

    def describe(self) -> str:
        return f"{self.method} on {self.config.backbone} ({self.trainable_parameter_count():,} trainable parameters)"
