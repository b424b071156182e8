"""Several LoRA adapters in one frozen backbone, chosen per batch row (multi-domain serving).

LoRA (Hu et al. 2021) adds ``B A x * alpha / r`` beside a frozen linear layer. peft keeps any number
of adapters in one layer under distinct adapter names, and its LoRA layers take
``adapter_names=[name per row]`` (``"__base__"``: no adapter) to apply each row's own adapter in
one forward pass (peft's mixed-adapter batches). :class:`LoraRouter` injects each served domain's
adapter under its own name and passes ``adapter_names`` to every LoRA layer through a forward
pre-hook, because sentence-transformers calls the encoder's ``forward`` itself.

Outside :meth:`LoraRouter.use_rows` every row is ``"__base__"``: the backbone computes what it
computed before any adapter was injected, so prompt retrievers sharing it are unaffected.
This is a serving path only: adapters are loaded frozen, never trained here (training LoRA on a
shared backbone stays refused, see :mod:`beir_peft.encoders.sharing`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import ArtifactError, ConfigError

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
_ROUTER_ATTRIBUTE = "_beir_peft_lora_router"


class LoraRouter:
    """The LoRA adapters of one Hugging Face encoder and the per-row choice among them.

    ``LoraRouter.of(hf_model)`` returns the router attached to the encoder, creating it once.
    """

    @classmethod
    def of(cls, model: nn.Module) -> LoraRouter:
        router = model.__dict__.get(_ROUTER_ATTRIBUTE)
        return router if router is not None else cls(model)

    def __init__(self, model: nn.Module):
        self.model = model
        self.adapters: list[str] = []
        self._rows: list[str] | None = None
        self._hooked: set[int] = set()
        model.__dict__[_ROUTER_ATTRIBUTE] = self

    def add(self, name: str, lora_config, state: Mapping[str, torch.Tensor], where: str) -> None:
        """Inject an adapter called ``name`` (a ``peft.LoraConfig``) and load its tensors strictly.

        ``state``: ``{encoder parameter name with ".default." in place of the adapter name: tensor}``,
        i.e. the names a single-adapter LoRA encoder has. A missing or extra tensor, or a wrong
        shape, is an :class:`ArtifactError` naming ``where``.
        """
        from peft import inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        if name in self.adapters or name == BASE or "." in name:
            raise ConfigError(f"LoRA adapter name {name!r} is taken or invalid")
        try:
            with warnings.catch_warnings():  # several adapters in one model is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(lora_config, self.model, adapter_name=name)
        except ValueError as exc:
            raise ConfigError(f"{where}: LoRA targets do not match the backbone: {exc}") from exc
        self.adapters.append(name)
        expected = {
            n.replace(f".{name}.", ".default."): p
            for n, p in self.model.named_parameters()
            if f".{name}." in n
        }
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            example = (missing or unexpected)[0]
            raise ArtifactError(
                f"{where}: the LoRA tensors do not fit the backbone ({len(missing)} missing, "
                f"{len(unexpected)} unexpected, e.g. {example})"
            )
        with torch.no_grad():
            for key, parameter in expected.items():
                if tuple(state[key].shape) != tuple(parameter.shape):
                    raise ArtifactError(
                        f"{where}: tensor {key} has shape {tuple(state[key].shape)}, "
                        f"the backbone expects {tuple(parameter.shape)}"
                    )
                parameter.copy_(state[key].to(parameter.dtype))
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for module in self.model.modules():
            if isinstance(module, LoraLayer) and id(module) not in self._hooked:
                module.register_forward_pre_hook(self._route, with_kwargs=True)
                self._hooked.add(id(module))

    @contextlib.contextmanager
    def use_rows(self, adapter_names: Sequence[str]) -> Iterator[None]:
        """Row ``i`` of every forward inside the block uses adapter ``adapter_names[i]`` (``"__base__"``: none)."""
        previous, self._rows = self._rows, list(adapter_names)
        try:
            yield
        finally:
            self._rows = previous

    def _route(self, module, args, kwargs):
        if kwargs.get("adapter_names") is not None:
            return None
        x = args[0] if args else kwargs["x"]
        kwargs["adapter_names"] = self._rows if self._rows is not None else [BASE] * x.shape[0]
        return args, kwargs


__all__ = ["BASE", "LoraRouter"]
