"""Parallel adapters beside every feed-forward block of a BERT-style encoder (DDR's REM, part 2).

He et al. 2022 (*Towards a Unified View of Parameter-Efficient Transfer Learning*), as used by DDR
(Zhan et al. 2022, seed 004, section 3.2; the authors' code: bottleneck 192, ReLU): a small
bottleneck network reads the feed-forward block's *input* and its output is added to the block's
output, before the residual connection and layer norm::

    out = LayerNorm(FFN(x) + scaling * W_up(ReLU(W_down(x))) + x)

``W_up`` starts at zero, so an injected model computes exactly what it did before. peft has no
parallel adapter (and the ``adapters`` library cannot be installed beside transformers 5), hence
this small module. Works on any encoder whose layers have BERT's ``intermediate``/``output``
structure (``output.dense``, ``output.dropout``, ``output.LayerNorm``): BERT, MiniLM, RoBERTa, ...
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..errors import ConfigError


class ParallelAdapter(nn.Module):
    """``scaling * up(relu(down(x)))``: ``(..., hidden) -> (..., hidden)``, zero at initialisation."""

    def __init__(self, hidden_size: int, bottleneck: int = 192, scaling: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.scaling = float(scaling)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.dropout(torch.relu(self.down(x))))


class OutputWithAdapter(nn.Module):
    """A BERT ``*Output`` block (dense, dropout, LayerNorm) that carries an adapter under
    ``adapter_name`` (the saved tensors' key: ``parallel_adapter.``, ``sequential_adapter.``)."""

    adapter_name: ClassVar[str]

    def __init__(self, output: nn.Module, adapter: ParallelAdapter):
        super().__init__()
        self.dense, self.dropout, self.LayerNorm = output.dense, output.dropout, output.LayerNorm
        setattr(self, self.adapter_name, adapter)


class OutputWithParallelAdapter(OutputWithAdapter):
    """A BERT ``*Output`` block with a parallel adapter added in."""

    adapter_name = "parallel_adapter"

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        ffn = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(ffn + self.parallel_adapter(input_tensor) + input_tensor)


def add_parallel_adapters(
    model: nn.Module, bottleneck: int = 192, scaling: float = 1.0
) -> list[ParallelAdapter]:
    """Put a :class:`ParallelAdapter` beside the feed-forward block of every layer of ``model``.

    Returns the adapters (their parameters are the only new ones). Raises :class:`ConfigError` when
    ``model`` has no BERT-style layers.
    """
    adapters = []
    for layer in feed_forward_layers(model, "parallel adapters"):
        output = layer.output
        adapter = ParallelAdapter(output.dense.out_features, bottleneck, scaling).to(
            output.dense.weight.device
        )
        layer.output = OutputWithParallelAdapter(output, adapter)
        adapters.append(adapter)
    return adapters


def feed_forward_layers(model: nn.Module, what: str) -> list[nn.Module]:
    """The layers of ``model`` with a BERT-style feed-forward block (``intermediate``, and an
    ``output`` with ``dense``, ``dropout`` and ``LayerNorm``), in order. Raises :class:`ConfigError`
    naming ``what`` cannot be added when there is none (DistilBERT, ModernBERT, T5, ...)."""
    layers = [
        module
        for module in model.modules()
        if getattr(module, "intermediate", None) is not None
        and all(hasattr(getattr(module, "output", None), name) for name in ("dense", "dropout", "LayerNorm"))
    ]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no BERT-style feed-forward blocks (layer.intermediate/output): "
            f"{what} cannot be added"
        )
    return layers
