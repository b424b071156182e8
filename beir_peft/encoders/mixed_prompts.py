"""Mixed batches of deep prompts: every row of one forward pass attends to its own prompt's prefix.

P-Tuning v2 (Tam et al. 2022, section 4.2) concatenates a prompt's per-layer key/values to every
row of a batch. To serve many domains from one frozen backbone in one forward pass, the prefix is
instead gathered per row: for a batch whose row ``i`` belongs to prompt ``p_i`` (or to none), each
layer's prefix keys/values become ``(batch, heads, L, head_dim)`` with ``L`` the longest prompt
of the batch, and the positions a shorter prompt does not have are masked out:

* ungated prompts (the paper's concatenation, ``Attn(q, [P_k; K], [P_v; V])``): the attention mask
  is extended per row by the prompt's visible positions;
* gated prompts (``Attn(q, K, V) + g * Attn(q, P_k, P_v)``): the prefix softmax gets its own mask,
  and the gate ``g`` is gathered per row;
* rows without a prompt (the plain backbone) go with the gated rows with a zero gate and zero
  values: their prefix term is exactly zero, so they compute stock attention.

A batch with both ungated and gated (or prompt-less) rows runs the two formulas on their own rows
of the same layer call. Every row computes what its prompt computes alone, up to float rounding
of the extra masked positions (checked to 1e-5 in tests/test_serving.py).

Used through :meth:`~beir_peft.encoders.deep_prompt.DeepPromptHost.use_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from .deep_prompt import DeepPrompt, pad_position_bias


class RowPrompts:
    """A prompt (or ``None``) per batch row, as the deep-prompt attention function reads them.

    The distinct prompts' key/values are stacked once per forward (at layer 0), padded to the
    longest prompt: per layer ``(P + 1, heads, L, head_dim)``, entry 0 being "no prompt"; each
    layer then gathers the rows' entries.

    Args:
        prompts: one entry per row of the batch, ``len(prompts) == batch``.
    """

    def __init__(self, prompts: Sequence[DeepPrompt | None]):
        distinct: list[DeepPrompt] = []
        index: dict[int, int] = {}
        rows = []
        for prompt in prompts:
            if prompt is None:
                rows.append(0)
                continue
            if id(prompt) not in index:
                distinct.append(prompt)
                index[id(prompt)] = len(distinct)
            rows.append(index[id(prompt)])
        self.prompts = distinct
        self._rows = torch.tensor(rows, dtype=torch.long)
        self._lengths = torch.tensor([0] + [p.length for p in distinct], dtype=torch.long)
        self._stacked: tuple | None = None

    def lengths(self) -> torch.Tensor:
        """``(batch,)`` each row's prompt length (0: no prompt)."""
        return self._lengths[self._rows]

    def _stack(self, device: torch.device, dtype: torch.dtype):
        """Per layer padded keys and values ``(P + 1, H, L, d)``, the visible positions ``(P + 1, L)``
        and the per-layer gates ``(P + 1, layers, H)`` (zero for ungated prompts and for entry 0)."""
        first = self.prompts[0]
        layers, heads, head_dim = first.num_layers, first.num_heads, first.head_dim
        longest = max(p.length for p in self.prompts)
        count = len(self.prompts) + 1
        keys = [
            torch.zeros(count, heads, longest, head_dim, device=device, dtype=dtype) for _ in range(layers)
        ]
        values = [torch.zeros_like(k) for k in keys]
        visible = torch.zeros(count, longest, dtype=torch.bool, device=device)
        visible[0] = True  # no prompt: zero values under a zero gate, so the term is exactly 0
        gates = torch.zeros(count, layers, heads, device=device, dtype=dtype)
        for entry, prompt in enumerate(self.prompts, start=1):
            for layer, (k, v) in enumerate(prompt.key_values()):
                keys[layer][entry, :, : prompt.length] = k.to(dtype)
                values[layer][entry, :, : prompt.length] = v.to(dtype)
            visible[entry, : prompt.length] = True
            if prompt.gate is not None:
                gates[entry] = prompt.gate.to(dtype)
        gated = torch.tensor([True] + [p.gate is not None for p in self.prompts], device=device)
        return keys, values, visible, gates, gated

    def attention(self, module, query, key, value, attention_mask, **kwargs):
        """The deep-prompt attention of one layer for the whole batch; shapes as in
        ``_deep_prompt_attention`` (``query/key/value`` ``(B, H, S, d)``; returns ``(B, S, H, d)``)."""
        if not self.prompts:  # no row has a prompt: the plain backbone
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        layer = module._beir_peft_layer
        if layer == 0 or self._stacked is None:
            self._stacked = self._stack(query.device, query.dtype)
        keys, values, visible, gates, gated = self._stacked
        rows = self._rows.to(query.device)
        row_gated = gated[rows]
        if bool(row_gated.all()):
            return self._gated(module, query, key, value, attention_mask, rows, layer, kwargs), None
        if not bool(row_gated.any()):
            return self._concat(module, query, key, value, attention_mask, rows, layer, kwargs), None
        out = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
        for selected in (row_gated, ~row_gated):
            idx = selected.nonzero().squeeze(1)
            mask = _rows_of(attention_mask, idx)
            row_kwargs = {**kwargs, "position_bias": _rows_of(kwargs.get("position_bias"), idx)}
            parts = (module, query[idx], key[idx], value[idx], mask, rows[idx], layer, row_kwargs)
            out[idx] = self._gated(*parts) if selected is row_gated else self._concat(*parts)
        return out, None

    def _gated(self, module, query, key, value, attention_mask, rows, layer, kwargs):
        keys, values, visible, gates, _ = self._stacked
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)  # (b, S, H, d)
        gate = gates[rows, layer].to(query.dtype)[:, :, None, None]  # (b, H, 1, 1)
        prefix_out = torch.nn.functional.scaled_dot_product_attention(
            query,
            keys[layer][rows].to(query.dtype),
            values[layer][rows].to(query.dtype) * gate,
            attn_mask=visible[rows][:, None, None, :],
            scale=kwargs.get("scaling"),
        )  # (b, H, S, d)
        if torch.is_grad_enabled() and (out.requires_grad or prefix_out.requires_grad):
            return out + prefix_out.transpose(1, 2)
        return out.add_(prefix_out.transpose(1, 2))  # inference: no extra (b, S, H, d) buffer

    def _concat(self, module, query, key, value, attention_mask, rows, layer, kwargs):
        keys, values, visible, _, _ = self._stacked
        batch, _, seq, _ = query.shape
        kv = key.shape[2]
        key = torch.cat([keys[layer][rows].to(query.dtype), key], dim=2)
        value = torch.cat([values[layer][rows].to(query.dtype), value], dim=2)
        prefix_visible = visible[rows][:, None, None, :].expand(batch, 1, seq, -1)
        if attention_mask is None:
            attention_mask = torch.ones(batch, 1, seq, kv, dtype=torch.bool, device=query.device)
        attention_mask = attention_mask.expand(batch, 1, seq, kv)
        if attention_mask.dtype == torch.bool:
            prefix_mask = prefix_visible
        else:  # additive float mask
            prefix_mask = torch.zeros(prefix_visible.shape, dtype=attention_mask.dtype, device=query.device)
            prefix_mask = prefix_mask.masked_fill(~prefix_visible, torch.finfo(attention_mask.dtype).min)
        attention_mask = torch.cat([prefix_mask, attention_mask], dim=-1)
        if kwargs.get("position_bias") is not None:
            kwargs = {**kwargs, "position_bias": pad_position_bias(kwargs["position_bias"], visible.shape[1])}
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        return out


def _rows_of(tensor: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    """The mask (or position bias) of the rows ``idx`` (one broadcast over the batch is kept as it is)."""
    if tensor is None or tensor.shape[0] == 1:
        return tensor
    return tensor[idx]


__all__ = ["RowPrompts"]
