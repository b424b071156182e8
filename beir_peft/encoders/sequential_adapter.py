"""Sequential bottleneck adapters after every feed-forward block: the PT2 paper's Adapter baseline.

Tam et al. 2022 (seed 000) compare P-Tuning v2 with adapters (section 4.2, eq. 6: ``h <- h +
f(h W_down) W_up``; Table 1), trained with adapter-transformers 2.2's ``PfeifferConfig``
(appendix B.1): one adapter per layer, after the feed-forward block (Pfeiffer et al. 2020), a
bottleneck of ``hidden / 16`` with ReLU, reading the block's normalised output and added back
before the layer's own (frozen) LayerNorm, which is applied again::

    s   = FFN(x) + x                          # the layer's residual sum
    out = LayerNorm(s + W_up(ReLU(W_down(LayerNorm(s)))))

(adapter-transformers' ``original_ln_before``, ``residual_before_ln`` and ``original_ln_after``:
its residual is the block's output before the sum, to which the input is then added.) Initial
weights: ``"bert"``, N(0, 0.02) with zero biases, as adapter-transformers 2.2 initialised them (the
paper's); ``"zeros"``: the up-projection zero, so that the untrained model is exactly the backbone.
peft has no bottleneck adapter and the ``adapters`` library cannot be installed beside
transformers 5, hence this small module (built on DDR's :class:`~.parallel_adapter.ParallelAdapter`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .parallel_adapter import OutputWithAdapter, ParallelAdapter, feed_forward_layers

#: the initialisations of the adapters' weights (see the module docstring)
ADAPTER_INITS = ("bert", "zeros")
#: adapter-transformers' PfeifferConfig: bottleneck = hidden size / 16
PFEIFFER_REDUCTION_FACTOR = 16
#: BERT's initializer_range, with which adapter-transformers 2.2 initialised adapters
BERT_INIT_STD = 0.02


class OutputWithSequentialAdapter(OutputWithAdapter):
    """A BERT ``*Output`` block (dense, dropout, LayerNorm) followed by a sequential adapter."""

    adapter_name = "sequential_adapter"

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        residual_sum = self.dropout(self.dense(hidden_states)) + input_tensor
        return self.LayerNorm(residual_sum + self.sequential_adapter(self.LayerNorm(residual_sum)))


def add_sequential_adapters(
    model: nn.Module, reduction_factor: int = PFEIFFER_REDUCTION_FACTOR, init: str = "bert"
) -> list[ParallelAdapter]:
    """Put an adapter of bottleneck ``hidden // reduction_factor`` after the feed-forward block of
    every layer of ``model``, initialised by ``init`` (:data:`ADAPTER_INITS`).

    Returns the adapters (their parameters are the only new ones; draw ``torch.manual_seed`` first
    for a reproducible ``"bert"`` initialisation). Raises :class:`ConfigError` for an unknown
    ``init``, a bottleneck below 1, or a ``model`` without BERT-style layers.
    """
    if init not in ADAPTER_INITS:
        raise ConfigError(f"adapter init must be one of {', '.join(ADAPTER_INITS)}, got {init!r}")
    adapters = []
    for layer in feed_forward_layers(model, "sequential adapters"):
        output = layer.output
        hidden = output.dense.out_features
        if hidden // reduction_factor < 1:
            raise ConfigError(
                f"adapter reduction factor {reduction_factor} leaves no bottleneck of hidden size {hidden}"
            )
        adapter = ParallelAdapter(hidden, hidden // reduction_factor).to(output.dense.weight.device)
        if init == "bert":
            for linear in (adapter.down, adapter.up):
                nn.init.normal_(linear.weight, std=BERT_INIT_STD)
                nn.init.zeros_(linear.bias)
        layer.output = OutputWithSequentialAdapter(output, adapter)
        adapters.append(adapter)
    return adapters


__all__ = [
    "ADAPTER_INITS",
    "OutputWithSequentialAdapter",
    "PFEIFFER_REDUCTION_FACTOR",
    "add_sequential_adapters",
]
