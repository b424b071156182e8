"""P-Tuning v2 deep prompts: trainable key/value prefixes on every attention layer of a frozen encoder.

Tam et al. 2022 (seed 000), section 4.2 "Prefix-Tuning & P-Tuning v2": for every layer, ``l``
trainable key vectors ``P_k`` and value vectors ``P_v`` are concatenated to the layer's keys and
values, ``head = Attn(x W_q, [P_k; x W_k], [P_v; x W_v])``. P-Tuning v2 drops prefix-tuning's
reparameterisation MLP (kept here as ``projection=True``) and applies dropout to the prefix.

How it is wired: the prefix enters through a registered ``transformers`` attention function
(``"beir_peft_deep_prompt"``), so an encoder whose attention dispatches through
``ALL_ATTENTION_FUNCTIONS`` gets deep prompts without forking its modelling code. MPNet computes
its attention (with a relative position bias) in its own forward: the host replaces that forward
with one that calls the same function (:mod:`~beir_peft.encoders.mpnet_prompt`). A relative
position bias (MPNet's, T5's) covers the real tokens only: prefix keys get none. Checked on tiny
models of every family in :data:`SUPPORTED_ENCODERS` (tests/test_architectures.py); other encoders
are refused. With no prompt active the function *is* stock SDPA (MPNet: its own forward), so a
frozen backbone shared by several prompts (query side, passage side, other retrievers' prompts: one
:class:`DeepPromptHost` per encoder, shared) behaves exactly as the original.

Two choices that differ from peft's prefix tuning, both faithful to the authors' PT-Retrieval code:
position ids are not shifted by the prefix length (``shift_positions=False``), and
``token_type_ids`` are kept.

One addition, for strong pretrained retrievers (see docs/pt2_dpr.md): ``gate=True`` gives each
layer and head a scalar gate initialised at zero (Zhang et al. 2023, LLaMA-Adapter) and attends
to the prefix with its own softmax, ``out = Attn(q, K, V) + g * Attn(q, P_k, P_v)``. The model then
starts *exactly* at the zero-shot backbone instead of below it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..errors import ConfigError
from . import mpnet_prompt

ATTENTION_NAME = "beir_peft_deep_prompt"
#: encoders checked to take deep prompts (tests/test_architectures.py, transformers 5): through the
#: attention interface, or (MPNet) through the host's own attention forward
SUPPORTED_ENCODERS = (
    "BERT (e.g. MiniLM)", "RoBERTa", "XLM-R", "CamemBERT", "ELECTRA", "ERNIE", "DistilBERT", "MPNet",
    "ModernBERT", "T5 encoder",
)  # fmt: skip
#: where an encoder keeps its one DeepPromptHost (see DeepPromptHost.of)
_HOST_ATTRIBUTE = "_beir_peft_deep_prompt_host"


@dataclass
class _PromptState:
    """Which prompt the backbone attends to right now, and its per-layer key/values for this forward."""

    prompt: DeepPrompt | None = None
    key_values: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    #: a prompt per batch row (:class:`~beir_peft.encoders.mixed_prompts.RowPrompts`), for mixed batches
    rows: Any = None
    #: layer -> (key, value) of the plain backbone, filled while :meth:`DeepPromptHost.activations_of` runs
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def active(self) -> bool:
        """Whether the attention must go through the deep-prompt function (else: the stock path)."""
        return self.prompt is not None or self.rows is not None or self.captured is not None


class DeepPrompt(nn.Module):
    """Per-layer prefixes: ``key``/``value`` of shape ``(layers, heads, length, head_dim)``.

    Args:
        num_layers, num_heads, head_dim: the backbone's attention geometry.
        length: prefix length ``l`` (paper: 100 for DPR, 64 for ColBERT).
        dropout: dropout on the prefix key/values during training (paper: 0.1).
        projection: prefix-tuning's reparameterisation (Li & Liang 2021): an embedding of shape
            ``(length, hidden)`` through ``Linear-Tanh-Linear`` to all layers' key/values.
            P-Tuning v2 (the paper's default) uses ``False``.
        projection_hidden: hidden width of that MLP.
        gate: zero-initialised per-layer, per-head gate with a separate prefix softmax (see module doc).
        init_std: standard deviation of the random initialisation (P-Tuning v2's ``nn.Embedding``
            prefix starts at N(0, 1); a small value keeps a strong backbone's attention intact).
    """

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        length: int = 100,
        dropout: float = 0.1,
        projection: bool = False,
        projection_hidden: int = 512,
        gate: bool = False,
        init_std: float = 1.0,
    ):
        super().__init__()
        if length < 1:
            raise ConfigError(f"prefix length must be >= 1, got {length}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"prefix dropout must be in [0, 1), got {dropout}")
        self.num_layers, self.num_heads, self.head_dim, self.length = num_layers, num_heads, head_dim, length
        self.projection = projection
        shape = (num_layers, num_heads, length, head_dim)
        if projection:
            hidden = num_heads * head_dim
            self.embedding = nn.Parameter(torch.randn(length, hidden) * init_std)
            self.mlp = nn.Sequential(
                nn.Linear(hidden, projection_hidden),
                nn.Tanh(),
                nn.Linear(projection_hidden, num_layers * 2 * hidden),
            )
        else:
            self.key = nn.Parameter(torch.randn(shape) * init_std)
            self.value = nn.Parameter(torch.randn(shape) * init_std)
        self.gate = nn.Parameter(torch.zeros(num_layers, num_heads)) if gate else None
        self.dropout = nn.Dropout(dropout)

    @property
    def gated(self) -> bool:
        return self.gate is not None

    def key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer ``(key, value)``, each ``(heads, length, head_dim)``, dropout applied in training."""
        if self.projection:
            kv = self.mlp(self.embedding)  # (length, layers * 2 * hidden)
            kv = kv.view(self.length, self.num_layers * 2, self.num_heads, self.head_dim).permute(1, 2, 0, 3)
            keys, values = kv[0::2], kv[1::2]
        else:
            keys, values = self.key, self.value
        keys, values = self.dropout(keys), self.dropout(values)
        return [(keys[i], values[i]) for i in range(self.num_layers)]

    @torch.no_grad()
    def init_from_activations(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Start from the backbone's own keys/values of real text (Li & Liang 2021, section 7.2).

        ``keys``/``values``: ``(layers, heads, n, head_dim)`` with ``n >= length``; the first
        ``length`` positions are copied.
        """
        if self.projection:
            raise ConfigError(
                "init from text is only available without the reparameterisation MLP (projection=False)"
            )
        if keys.shape[2] < self.length:
            raise ConfigError(f"init text gives {keys.shape[2]} tokens, the prefix needs {self.length}")
        self.key.copy_(keys[:, :, : self.length])
        self.value.copy_(values[:, :, : self.length])

    def extra_repr(self) -> str:
        return (
            f"layers={self.num_layers}, heads={self.num_heads}, length={self.length}, head_dim={self.head_dim}, "
            f"projection={self.projection}, gate={self.gated}"
        )


def _deep_prompt_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention with the active prompt's prefix; stock SDPA when none is active.

    Shapes: ``query/key/value`` ``(batch, heads, seq, head_dim)``; mask bool ``(batch, 1, q, kv)``
    (True = attend), additive float or ``None``; ``kwargs["position_bias"]`` (T5, MPNet), when
    given, ``(batch or 1, heads, q, kv)`` over the real tokens; returns ``(batch, seq, heads,
    head_dim)`` as SDPA does. ``module._beir_peft_layer`` is the layer's index (set by the host).
    """
    state: _PromptState | None = getattr(module, "_beir_peft_prompt_state", None)
    if state is not None and state.captured is not None:
        state.captured[module._beir_peft_layer] = (key[0], value[0])
    if state is not None and state.rows is not None:  # a mixed batch: a prompt per row
        return state.rows.attention(module, query, key, value, attention_mask, **kwargs)
    if state is None or state.prompt is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    layer = module._beir_peft_layer
    if layer == 0 or not state.key_values:
        # Materialise key/values once per forward (layer 0 runs first): the MLP and dropout run
        # once, not once per layer.
        state.key_values = state.prompt.key_values()
    prefix_key, prefix_value = state.key_values[layer]
    batch = query.shape[0]
    prefix_key = prefix_key.to(query.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
    prefix_value = prefix_value.to(query.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
    if state.prompt.gate is not None:
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)  # (B, S, H, d)
        # g * softmax(q P_k) P_v == softmax(q P_k) (g * P_v): gating the (heads, length, d) values
        # is cheaper than gating the (batch, seq, heads, d) output.
        gate = state.prompt.gate[layer].to(query.dtype).view(1, -1, 1, 1)
        dropout = kwargs.get("dropout", 0.0) if module.training else 0.0
        prefix_out = torch.nn.functional.scaled_dot_product_attention(
            query, prefix_key, prefix_value * gate, dropout_p=dropout, scale=kwargs.get("scaling")
        )  # (B, H, S, d)
        if torch.is_grad_enabled() and (out.requires_grad or prefix_out.requires_grad):
            return out + prefix_out.transpose(1, 2), None
        return out.add_(prefix_out.transpose(1, 2)), None  # inference: no extra (B, S, H, d) buffer
    key = torch.cat([prefix_key, key], dim=2)
    value = torch.cat([prefix_value, value], dim=2)
    if attention_mask is not None:
        length = prefix_key.shape[2]
        if attention_mask.dtype == torch.bool:
            visible = attention_mask.new_ones(*attention_mask.shape[:-1], length)
        else:  # additive float mask
            visible = attention_mask.new_zeros(*attention_mask.shape[:-1], length)
        attention_mask = torch.cat([visible, attention_mask], dim=-1)
    if kwargs.get("position_bias") is not None:
        kwargs["position_bias"] = pad_position_bias(kwargs["position_bias"], prefix_key.shape[2])
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def pad_position_bias(bias: torch.Tensor, length: int) -> torch.Tensor:
    """``bias`` ``(b, heads, q, kv)`` with ``length`` zero columns in front: no position bias on the
    prefix keys, which have no position."""
    return torch.cat([bias.new_zeros(*bias.shape[:-1], length), bias], dim=-1)


AttentionInterface.register(ATTENTION_NAME, _deep_prompt_attention)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def dispatches_through_interface(module: nn.Module) -> bool:
    """Whether ``module``'s forward looks its attention up in ``ALL_ATTENTION_FUNCTIONS``."""
    code = getattr(inspect.unwrap(type(module).forward), "__code__", None)
    return code is not None and "ALL_ATTENTION_FUNCTIONS" in code.co_names


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The encoder's self-attention modules deep prompts reach, in layer order: those that dispatch
    through the attention interface, or MPNet's (see :mod:`~beir_peft.encoders.mpnet_prompt`)."""
    return [
        m
        for m in model.modules()
        if (dispatches_through_interface(m) or mpnet_prompt.is_mpnet_attention(m))
        and not getattr(m, "is_cross_attention", False)
        and not getattr(m, "is_decoder", False)
    ]


def _attention_geometry(module: nn.Module, config) -> tuple[int, int]:
    """``(heads, head_dim)`` of a self-attention module, whatever its family names them."""

    def first(names: tuple[str, ...], default: int) -> int:
        return int(next((getattr(module, n) for n in names if hasattr(module, n)), default))

    heads = first(("num_attention_heads", "n_heads", "num_heads"), config.num_attention_heads)
    return heads, first(
        ("attention_head_size", "head_dim", "key_value_proj_dim"), config.hidden_size // heads
    )


class DeepPromptHost:
    """Installs the deep-prompt attention into a ``transformers`` encoder and switches prompts.

    One host per backbone, shared by every retriever on it (:meth:`of` returns the host already
    attached to the encoder, creating it once); any number of :class:`DeepPrompt` modules, of any
    number of retrievers, take turns::

        host = DeepPromptHost.of(hf_model)
        with host.use(query_prompt):
            embeddings = model(features)

    Outside a ``use`` block the encoder computes exactly what it did before the host was attached.
    What the host fixes for every prompt on the backbone (``shift_positions``) is set by the first
    request; a later request asking for another value is a :class:`ConfigError`.

    Args:
        model: the Hugging Face encoder (e.g. ``SentenceTransformer[0].auto_model``).
        shift_positions: start real tokens' position ids at the prefix length, as peft does.
            Default ``False``: positions start at 0, as in the authors' code.
    """

    @classmethod
    def of(cls, model: PreTrainedModel, shift_positions: bool = False) -> DeepPromptHost:
        """The host attached to ``model``, created on the first call."""
        host = cls.attached(model)
        if host is None:
            return cls(model, shift_positions=shift_positions)
        if host.shift_positions != shift_positions:
            raise ConfigError(
                f"the backbone's deep prompts already run with shift_positions={host.shift_positions}; "
                f"a prompt with shift_positions={shift_positions} cannot share it (load another copy)"
            )
        return host

    def __init__(self, model: PreTrainedModel, shift_positions: bool = False):
        if model.__dict__.get(_HOST_ATTRIBUTE) is not None:
            raise ConfigError(
                f"{type(model).__name__} already has a deep-prompt host; get it with DeepPromptHost.of(model)"
            )
        modules = attention_modules(model)
        if not modules:
            raise ConfigError(
                f"{type(model).__name__} computes its attention in its own forward, not through transformers' "
                f"attention interface, which deep prompts need (supported: {', '.join(SUPPORTED_ENCODERS)})"
            )
        layers = getattr(model.config, "num_hidden_layers", len(modules))
        if len(modules) != layers:  # ALBERT: one attention module called by every layer
            raise ConfigError(
                f"{type(model).__name__} shares {len(modules)} attention module(s) across its {layers} layers; "
                "deep prompts need one per layer"
            )
        embeddings = getattr(model, "embeddings", None)
        if shift_positions and (
            embeddings is None or "position_ids" not in inspect.signature(embeddings.forward).parameters
        ):
            raise ConfigError(f"{type(model).__name__} has no embeddings with position ids to shift")
        self.model = model
        self.num_layers = len(modules)
        self.num_heads, self.head_dim = _attention_geometry(modules[0], model.config)
        self.shift_positions = shift_positions
        self.state = _PromptState()
        for layer, module in enumerate(modules):
            module._beir_peft_prompt_state = self.state
            module._beir_peft_layer = layer
            if mpnet_prompt.is_mpnet_attention(module):
                mpnet_prompt.install(module, _deep_prompt_attention)
        if any(dispatches_through_interface(m) for m in modules):
            model.set_attn_implementation(ATTENTION_NAME)
        if shift_positions:
            # The embeddings module is called as a module (so its hooks run) even when the encoder's
            # own forward is called directly, as sentence-transformers does.
            embeddings.register_forward_pre_hook(self._shift_positions, with_kwargs=True)
        model.__dict__[_HOST_ATTRIBUTE] = self

    @staticmethod
    def attached(model: PreTrainedModel) -> DeepPromptHost | None:
        """The host attached to ``model``, ``None`` when it has none."""
        return model.__dict__.get(_HOST_ATTRIBUTE)

    def checkpoint_contexts(
        self,
    ) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """``context_fn`` for ``torch.utils.checkpoint``: a layer recomputed in the backward pass,
        after the ``use`` block has closed, attends to the prompt (and the same prefix key/values)
        it attended to in the forward. Called at each checkpointed layer's forward."""
        return contextlib.nullcontext(), self._replaying(
            self.state.prompt, self.state.rows, self.state.key_values
        )

    @contextlib.contextmanager
    def _replaying(self, prompt, rows, key_values) -> Iterator[None]:
        previous = self.state.prompt, self.state.rows, self.state.key_values
        self.state.prompt, self.state.rows, self.state.key_values = prompt, rows, key_values
        try:
            yield
        finally:
            self.state.prompt, self.state.rows, self.state.key_values = previous

    def new_prompt(self, **kwargs) -> DeepPrompt:
        """A :class:`DeepPrompt` shaped for this backbone."""
        return DeepPrompt(self.num_layers, self.num_heads, self.head_dim, **kwargs)

    @contextlib.contextmanager
    def use(self, prompt: DeepPrompt | None) -> Iterator[None]:
        """Attend to ``prompt`` inside the block (``None``: the plain backbone)."""
        previous = self.state.prompt, self.state.rows
        self.state.prompt, self.state.key_values, self.state.rows = prompt, [], None
        try:
            yield
        finally:
            (self.state.prompt, self.state.rows), self.state.key_values = previous, []

    @contextlib.contextmanager
    def use_rows(self, rows) -> Iterator[None]:
        """Attend, in row ``i`` of the batch, to the ``i``-th prompt of ``rows`` (a
        :class:`~beir_peft.encoders.mixed_prompts.RowPrompts`) inside the block: one forward for a
        batch whose rows belong to different prompts (multi-domain serving)."""
        previous = self.state.prompt, self.state.rows
        self.state.prompt, self.state.key_values, self.state.rows = None, [], rows
        try:
            yield
        finally:
            (self.state.prompt, self.state.rows), self.state.key_values = previous, []

    def _shift_positions(self, module, args, kwargs):
        prompt, rows = self.state.prompt, self.state.rows
        if (prompt is None and rows is None) or kwargs.get("position_ids") is not None:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        reference = input_ids if input_ids is not None else kwargs["inputs_embeds"][..., 0]
        seq = reference.shape[1]
        if rows is not None:  # each row starts after its own prompt's length
            offsets = rows.lengths().to(reference.device)
            kwargs["position_ids"] = offsets[:, None] + torch.arange(seq, device=reference.device)[None, :]
            return args, kwargs
        kwargs["position_ids"] = torch.arange(
            prompt.length, prompt.length + seq, device=reference.device
        ).unsqueeze(0)
        return args, kwargs

    @torch.no_grad()
    def activations_of(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values the frozen backbone computes for tokenised text.

        ``features``: one tokenised sequence (batch 1). Returns ``keys, values`` of shape
        ``(layers, heads, seq, head_dim)``.
        """
        accepted = inspect.signature(self.model.forward).parameters
        inputs = {
            k: v
            for k, v in features.items()
            if k in ("input_ids", "attention_mask", "token_type_ids") and k in accepted
        }
        self.state.captured = {}
        try:
            with self.use(None):
                self.model(**inputs)
            captured = self.state.captured
        finally:
            self.state.captured = None
        # (heads, seq, head_dim) per layer, as the layer's attention receives them
        keys, values = zip(*(captured[i] for i in range(self.num_layers)), strict=True)
        return torch.stack(keys), torch.stack(values)


def text_activations(
    host: DeepPromptHost, tokenizer, text: str, length: int, max_positions: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's keys/values of ``text`` repeated to ``length`` tokens ([CLS]/[SEP] dropped).

    What a prefix is initialised from (Li & Liang 2021, section 7.2). Returns CPU tensors of shape
    ``(layers, heads, length, head_dim)``; :class:`ConfigError` when ``length`` tokens do not fit
    ``max_positions``.
    """
    words = max(1, len(text.split()))
    repeated = " ".join([text] * (length // words + 1))
    encoded = tokenizer(
        repeated, truncation=True, max_length=min(length + 2, max_positions), return_tensors="pt"
    )
    device = next(host.model.parameters()).device
    keys, values = host.activations_of({k: v.to(device) for k, v in encoded.items()})
    if keys.shape[2] < length + 1:
        raise ConfigError(f"prefix_length {length} does not fit the backbone's {max_positions} positions")
    return keys[:, :, 1 : length + 1].cpu(), values[:, :, 1 : length + 1].cpu()


def new_deep_prompts(
    host: DeepPromptHost,
    count: int,
    tokenizer,
    *,
    init: str = "random",
    init_text: str | None = None,
    max_positions: int = 512,
    **options: Any,
) -> list[DeepPrompt]:
    """``count`` :class:`DeepPrompt` s for ``host``'s backbone (``options``: their ``length``,
    ``dropout``, ``projection``, ``projection_hidden``, ``gate``, ``init_std``).

    ``init="text"`` (without ``projection``) starts each from the backbone's keys/values of
    ``init_text`` (default :func:`default_init_text`; see :func:`text_activations`), computed once;
    ``"random"`` keeps N(0, ``init_std``).
    """
    prompts = [host.new_prompt(**options) for _ in range(count)]
    if init == "text" and not options.get("projection", False):
        keys, values = text_activations(
            host, tokenizer, init_text or default_init_text(), prompts[0].length, max_positions
        )
        for prompt in prompts:
            prompt.init_from_activations(keys, values)
    return prompts


def default_init_text() -> str:
    """Neutral English text used when no domain text is given to initialise a prefix from."""
    return (
        "Represent this text for retrieval: find the passages that answer the question, share its topic, "
        "and support or refute its claim with evidence from the documents, articles and abstracts in the collection."
    )


__all__ = [
    "ATTENTION_NAME",
    "DeepPrompt",
    "DeepPromptHost",
    "SUPPORTED_ENCODERS",
    "attention_modules",
    "default_init_text",
    "dispatches_through_interface",
    "new_deep_prompts",
    "pad_position_bias",
    "text_activations",
]
