"""Deep prompts on MPNet (e.g. sentence-transformers/all-mpnet-base-v2).

MPNet's self-attention does not dispatch through transformers' attention interface: its own forward
computes ``softmax(q k^T / sqrt(d) + position_bias + mask) v``, with a relative position bias the
encoder computes once for the real tokens. :func:`install` replaces that forward on one module:
while no prompt is active (and no activations are captured) it calls MPNet's own forward, so the
plain backbone is bit for bit the original; otherwise it projects ``q, k, v`` as MPNet does and
hands them, with the position bias, to the deep-prompt attention function, which gives the prefix
keys no position bias (P-Tuning v2, Tam et al. 2022, section 4.2: the prefix has no position).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable

from torch import nn


def is_mpnet_attention(module: nn.Module) -> bool:
    """Whether ``module`` is MPNet's self-attention (imported lazily: most backbones are not MPNet)."""
    if type(module).__name__ != "MPNetSelfAttention":
        return False
    from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

    return isinstance(module, MPNetSelfAttention)


def install(module: nn.Module, attention: Callable) -> None:
    """Route ``module``'s (an ``MPNetSelfAttention``) attention through ``attention`` (the
    deep-prompt attention function, same signature as a transformers attention function) whenever
    the host's prompt state is active."""
    stock_forward = module.forward

    def forward(
        self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs
    ):
        if not self._beir_peft_prompt_state.active:
            return stock_forward(hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
        hidden_shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q, k, v = (
            proj(hidden_states).view(hidden_shape).transpose(1, 2) for proj in (self.q, self.k, self.v)
        )
        out, _ = attention(
            self, q, k, v, attention_mask,  # MPNet's mask is additive (eager): bias and mask add up
            dropout=self.dropout.p if self.training else 0.0,
            scaling=1 / math.sqrt(self.attention_head_size),
            position_bias=position_bias,
            is_causal=False,
        )  # fmt: skip
        return (self.o(out.reshape(*hidden_states.shape[:-1], self.all_head_size)),)

    module.forward = types.MethodType(forward, module)


__all__ = ["install", "is_mpnet_attention"]
