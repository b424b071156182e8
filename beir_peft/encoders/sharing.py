"""Several retrievers on one backbone in memory: which methods may share a Hugging Face encoder.

Prompt methods (``pt2-dpr``, ``prompt``, ``pt2-colbert``) keep the backbone's weights frozen and
unchanged; their prompts act only inside their own ``host.use(prompt)`` block (one
:class:`~beir_peft.encoders.deep_prompt.DeepPromptHost` / ``InputPromptHost`` per backbone, shared).
Any number of them can therefore share one backbone, and the plain backbone still encodes as it did.

Weight methods change the backbone itself: ``ft``, ``bitfit`` and ``colbert-ft`` train its weights
(and switch their ``requires_grad`` on), ``lora``, ``adapter`` and ``ddr`` inject adapters into its layers
(peft's adapter name ``"default"``: a second injection replaces the first one's tensors). A
backbone one of them uses is refused to every other retriever, in either order, with a
:class:`ConfigError`: such a retriever needs its own copy of the backbone.

Serving is the one exception for LoRA: :func:`beir_peft.serving.load_domains` injects each
domain's adapter under its own adapter name and routes it per batch row
(:mod:`beir_peft.encoders.lora_router`); outside a served call every row is the plain backbone, so
the backbone is recorded as used by :data:`SERVED_LORA`, which prompt retrievers may share and
weight methods may not.

The users are recorded on the encoder object itself, so the rule holds whoever holds the pipeline.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..registry import methods

#: frozen LoRA adapters of served domains, routed per row (the plain backbone outside a served call)
SERVED_LORA = "served-lora"
#: methods whose retrievers leave the backbone's weights alone, so several can share one backbone
SHAREABLE_METHODS = (*methods(shareable=True), SERVED_LORA)
_USERS = "_beir_peft_backbone_users"


def backbone_users(encoder: nn.Module) -> tuple[str, ...]:
    """The methods of the retrievers built on ``encoder`` so far, in order."""
    return tuple(encoder.__dict__.get(_USERS, ()))


def check_backbone_shareable(encoder: nn.Module, method: str) -> None:
    """Refuse (:class:`ConfigError`) a ``method`` retriever on ``encoder`` when sharing would change
    what another retriever on it computes (see the module docstring)."""
    users = backbone_users(encoder)
    owner = next((user for user in users if user not in SHAREABLE_METHODS), None)
    if owner is not None:
        raise ConfigError(
            f"the backbone already belongs to a {owner} retriever, which changes its weights; "
            f"load a separate copy of the backbone for the {method} retriever"
        )
    if users and method not in SHAREABLE_METHODS:
        raise ConfigError(
            f"{method} changes the backbone's weights, and this backbone already serves a {users[0]} "
            f"retriever; load a separate copy of the backbone for the {method} retriever"
        )


def register_backbone_user(encoder: nn.Module, method: str) -> None:
    """Record that a ``method`` retriever now uses ``encoder`` (after :func:`check_backbone_shareable`)."""
    encoder.__dict__[_USERS] = [*backbone_users(encoder), method]


__all__ = [
    "SERVED_LORA",
    "SHAREABLE_METHODS",
    "backbone_users",
    "check_backbone_shareable",
    "register_backbone_user",
]
