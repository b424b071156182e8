"""The trained part of a retriever as a state dict, and its strict loading (shared by every model class)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ArtifactError


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
