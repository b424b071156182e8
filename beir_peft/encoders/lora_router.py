"""Several LoRA adapters in one frozen backbone, chosen per batch row (multi-domain serving).

LoRA (Hu et al. 2021) adds ``B A x * alpha / r`` beside a frozen linear layer. peft keeps any number
of adapters in one layer under distinct adapter names (each served domain's adapter is injected
under its own name), and its LoRA layers take ``adapter_names=[name per row]`` (``"__base__"``: no
adapter) to apply each row's adapter in one forward pass (peft's mixed-adapter batches).
:class:`LoraRouter` passes ``adapter_names`` to every LoRA layer through a forward pre-hook,
because sentence-transformers calls the encoder's ``forward`` itself. Two ways to add the
per-row LoRA term (``mixing``):

* ``"gathered"`` (default): peft computes the base layer for every row (``"__base__"``), and a
  forward hook adds the LoRA term with one batched matmul over the rows' own ``A`` and ``B``,
  gathered per row from the adapters of the batch (the BGMV kernel of Punica / S-LoRA, here as
  ``torch.bmm``; ranks padded with zeros). It reads the activations once.
* ``"peft"``: peft's own ``_mixed_batch_forward``, which copies each adapter's rows out of the
  activations and scatters the result back, per layer and adapter (slower in the measurements of
  docs/serving.md, though those are noisy).

Serving is inference only: the gathered path applies no LoRA dropout. Outside
:meth:`LoraRouter.use_rows` every row is ``"__base__"``: the backbone computes what it computed
before any adapter was injected, so prompt retrievers sharing it are unaffected (training LoRA on
a shared backbone stays refused, see :mod:`beir_peft.encoders.sharing`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import ArtifactError, ConfigError

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
MIXING = ("gathered", "peft")
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
        self.mixing = "gathered"
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
                module.register_forward_hook(self._add_gathered, with_kwargs=True)
                self._hooked.add(id(module))

    @contextlib.contextmanager
    def use_rows(self, adapter_names: Sequence[str], mixing: str | None = None) -> Iterator[None]:
        """Row ``i`` of every forward inside the block uses adapter ``adapter_names[i]`` (``"__base__"``:
        none); ``mixing``: ``"gathered"`` or ``"peft"`` (see the module docstring; default :attr:`mixing`)."""
        mixing = mixing or self.mixing
        if mixing not in MIXING:
            raise ConfigError(f"LoRA mixing must be one of {MIXING}, got {mixing!r}")
        previous = self._rows, self.mixing
        self._rows, self.mixing = list(adapter_names), mixing
        try:
            yield
        finally:
            self._rows, self.mixing = previous

    def _gathering(self) -> bool:
        return self._rows is not None and self.mixing == "gathered"

    def _route(self, module, args, kwargs):
        if kwargs.get("adapter_names") is not None:
            return None
        x = args[0] if args else kwargs["x"]
        rows = self._rows if self._rows is not None and not self._gathering() else None
        kwargs["adapter_names"] = rows if rows is not None else [BASE] * x.shape[0]
        return args, kwargs

    def _add_gathered(self, module, args, kwargs, output):
        """``output += B_row A_row x * scaling_row`` for every row, by two batched matmuls.

        ``x``: ``(batch, ..., in)``; the rows' adapters are stacked as ``A (u + 1, r, in)`` and
        ``B * scaling (u + 1, out, r)`` over the ``u`` adapters of the batch that this layer has
        (entry 0 zero: ``"__base__"`` and adapters without this layer), ranks padded with zeros.
        """
        if not self._gathering():
            return None
        names = [name for name in dict.fromkeys(self._rows) if name in module.lora_A]
        if not names:
            return None
        x = args[0] if args else kwargs["x"]
        first = module.lora_A[names[0]].weight
        rank = max(module.lora_A[name].weight.shape[0] for name in names)
        a = first.new_zeros(len(names) + 1, rank, first.shape[1])
        b = first.new_zeros(len(names) + 1, module.lora_B[names[0]].weight.shape[0], rank)
        for entry, name in enumerate(names, start=1):
            r = module.lora_A[name].weight.shape[0]
            a[entry, :r] = module.lora_A[name].weight
            b[entry, :, :r] = module.lora_B[name].weight * module.scaling[name]
        index = {name: entry for entry, name in enumerate(names, start=1)}
        rows = torch.tensor([index.get(name, 0) for name in self._rows], device=x.device)
        flat = x.reshape(x.shape[0], -1, x.shape[-1]).to(a.dtype)  # (batch, tokens, in)
        hidden = torch.bmm(flat, a[rows].transpose(1, 2))  # (batch, tokens, r)
        delta = torch.bmm(hidden, b[rows].transpose(1, 2))  # (batch, tokens, out)
        delta = delta.view(output.shape).to(output.dtype)
        if torch.is_grad_enabled() and output.requires_grad:
            return output + delta
        return output.add_(delta)  # inference: no extra buffer


__all__ = ["BASE", "LoraRouter"]
