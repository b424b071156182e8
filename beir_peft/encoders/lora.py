"""LoRA (Hu et al. 2021) through peft: injected into a Hugging Face encoder in place, and merged back.

Used by the ``lora`` retriever and by DDR's relevance module (:mod:`beir_peft.models.tuned`); a
backbone serving several LoRA folders at once has its own router (:mod:`beir_peft.encoders.lora_router`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError


def inject_lora(model: nn.Module, *, r: int, alpha: int, dropout: float, targets: Sequence[str]) -> None:
    """Add a LoRA of rank ``r`` (scale ``alpha / r``, ``dropout`` on its input) to every module of
    ``model`` named in ``targets``; :class:`ConfigError` when no module matches."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    try:
        inject_adapter_in_model(lora, model)
    except ValueError as exc:
        raise ConfigError(f"LoRA targets {targets} do not match the backbone: {exc}") from exc


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update of ``model`` into its base weight and drop the LoRA layers, in place."""
    from peft.tuners.lora import LoraLayer

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())


__all__ = ["inject_lora", "merge_lora"]
