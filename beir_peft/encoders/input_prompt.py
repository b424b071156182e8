"""Input-layer prompt tuning (Lester et al. 2021; P-Tuning, Liu et al. 2021): the paper's "Lester" baseline.

Tam et al. 2022, section 4.2 and Table 1: ``l`` trainable embeddings are prepended to the input
word embeddings only; every layer above sees them as ordinary tokens. Unlike deep prompts, their
influence must travel up from the first layer, which is why the paper finds them weaker.

The prompts are spliced in by hooks on the sentence-transformers ``Transformer`` module: before its forward the input ids
become embeddings with the prompt in front (attention mask and token types extended, position ids
of the real tokens unchanged); after it the prompt positions are cut from ``last_hidden_state``, so
pooling sees exactly the original tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from ..errors import ConfigError

#: where a sentence-transformers Transformer module keeps its one InputPromptHost (see InputPromptHost.of)
_HOST_ATTRIBUTE = "_beir_peft_input_prompt_host"


class InputPrompt(nn.Module):
    """``length`` trainable input embeddings, shape ``(length, hidden)``."""

    def __init__(self, length: int, hidden_size: int, init: torch.Tensor | None = None):
        super().__init__()
        if length < 1:
            raise ConfigError(f"prompt length must be >= 1, got {length}")
        self.length = length
        self.embedding = nn.Parameter(
            init.clone() if init is not None else torch.randn(length, hidden_size) * 0.02
        )

    def extra_repr(self) -> str:
        return f"length={self.length}, hidden={self.embedding.shape[1]}"


class InputPromptHost:
    """Installs input-prompt hooks on a sentence-transformers ``Transformer`` module and switches prompts.

    ``with host.use(prompt): model(features)``; outside a ``use`` block the encoder is untouched.
    The hooks sit on the sentence-transformers module (which is called as a module) rather than on
    the Hugging Face encoder, whose ``forward`` sentence-transformers calls directly.

    One host per ``Transformer`` module, shared by every retriever on it: :meth:`of` returns the
    host already attached, creating it once (so the hooks are registered once, however many
    retrievers take turns on the backbone).
    """

    @classmethod
    def of(cls, transformer_module: nn.Module, model: PreTrainedModel) -> InputPromptHost:
        """The host attached to ``transformer_module``, created on the first call."""
        host = transformer_module.__dict__.get(_HOST_ATTRIBUTE)
        return host if host is not None else cls(transformer_module, model)

    def __init__(self, transformer_module: nn.Module, model: PreTrainedModel):
        if transformer_module.__dict__.get(_HOST_ATTRIBUTE) is not None:
            raise ConfigError(
                "the Transformer module already has an input-prompt host; get it with InputPromptHost.of"
            )
        self.embeddings = model.get_input_embeddings()
        self.hidden_size = int(self.embeddings.embedding_dim)
        self.active: InputPrompt | None = None
        self._stash: dict = {}
        transformer_module.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        transformer_module.register_forward_hook(self._after_forward)
        transformer_module.__dict__[_HOST_ATTRIBUTE] = self

    def new_prompt(self, length: int, init_from_vocab: bool = True) -> InputPrompt:
        """A prompt initialised from random vocabulary embeddings (Lester et al.'s best init) or N(0, 0.02)."""
        init = None
        if init_from_vocab:
            vocab = self.embeddings.weight
            ids = torch.randint(1000, vocab.shape[0], (length,), generator=torch.Generator().manual_seed(0))
            init = vocab.detach()[ids.to(vocab.device)].float().cpu()
        return InputPrompt(length, self.hidden_size, init)

    @contextlib.contextmanager
    def use(self, prompt: InputPrompt | None) -> Iterator[None]:
        previous, self.active = self.active, prompt
        try:
            yield
        finally:
            self.active = previous

    def _before_forward(self, module, args, kwargs):
        prompt = self.active
        if prompt is None:
            return None
        features = dict(args[0] if args else kwargs.pop("features"))
        input_ids = features.pop("input_ids", None)
        if input_ids is None:
            raise ConfigError("input prompts need tokenised text (input_ids)")
        batch, seq = input_ids.shape
        embeds = self.embeddings(input_ids)
        lead = prompt.embedding.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        features["inputs_embeds"] = torch.cat([lead, embeds], dim=1)
        mask = features.get("attention_mask")
        if mask is None:
            mask = torch.ones(batch, seq, dtype=torch.long, device=input_ids.device)
        self._stash = {
            "input_ids": input_ids,
            "attention_mask": features.get("attention_mask"),
            "token_type_ids": features.get("token_type_ids"),
        }
        features["attention_mask"] = torch.cat([mask.new_ones(batch, prompt.length), mask], dim=1)
        token_types = features.get("token_type_ids")
        if token_types is not None:
            features["token_type_ids"] = torch.cat(
                [token_types.new_zeros(batch, prompt.length), token_types], dim=1
            )
        # Real tokens keep positions 0..seq-1; the prompt shares position 0 (its embedding absorbs it).
        positions = torch.arange(seq, device=input_ids.device)
        features["position_ids"] = torch.cat([positions.new_zeros(prompt.length), positions]).unsqueeze(0)
        return (features,), kwargs

    def _after_forward(self, module, args, output):
        prompt = self.active
        if prompt is None:
            return None
        original, self._stash = self._stash, {}
        for key in ("position_ids", "inputs_embeds"):
            output.pop(key, None)
        for key, value in original.items():
            if value is not None:
                output[key] = value
        output["token_embeddings"] = output["token_embeddings"][:, prompt.length :]
        return output
