"""A digest of everything that shapes a retriever's vectors, so that an index is never reused for another model.

Two checkpoints of one method share their description (``"pt2-dpr on <backbone> (N trainable
parameters)"``) but not their vectors. :class:`VectorFingerprintMixin` gives every retriever of the
package (:class:`~beir_peft.models.base.DenseRetriever` and its subclasses, and
:class:`~beir_peft.models.colbert.PT2ColBERT`) one ``fingerprint()``: a SHA-256 over

* its settings (:meth:`~VectorFingerprintMixin.fingerprint_settings`: the method, every config
  field, the pipeline's modules and their options, the maximum input length, the score function),
* and *every* parameter and buffer of its module (the trained tensors and the frozen backbone, so
  LoRA merged into the backbone's weights or a plain sentence-transformers model is covered too),
  with each tensor's name, dtype, shape and bytes.

Not the *backbone* fingerprint a saved folder records
(:func:`~beir_peft.encoders.backbone.backbone_fingerprint`, checked by
:func:`~beir_peft.encoders.backbone.check_backbone_fingerprint`): that one samples the word
embeddings to tell which backbone an adapter belongs to; this one is the whole retriever's.

Hashing all-MiniLM-L6-v2's 91 MB takes about a quarter of a second, so the digest is cached and
recomputed only when a tensor changes: an in-place update (an optimizer step, ``load_*``, ``copy_``)
bumps the tensor's version counter, and a move (``.to(device)``) or a new tensor changes its storage;
both are part of the cache key. (An update through ``tensor.data`` bypasses the version counter,
as it bypasses autograd; call :meth:`~VectorFingerprintMixin.forget_fingerprint` after one.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: hex digits kept of the SHA-256 (64 bits: enough to tell checkpoints apart, short in JSON)
FINGERPRINT_LENGTH = 16


def named_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of ``module`` (shared ones once), sorted by name."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    yield from sorted(tensors.items())


def tensors_digest(settings: Any, tensors: list[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 (first :data:`FINGERPRINT_LENGTH` hex digits) of JSON ``settings`` and the tensors' bytes.

    Each tensor contributes its name, dtype, shape and raw bytes (bfloat16 included), so the same
    values in another dtype, which give other vectors, get another digest.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    for name, tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"\0{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


class VectorFingerprintMixin:
    """``fingerprint()`` for a retriever: settings (:meth:`fingerprint_settings`) plus every tensor of
    :meth:`fingerprint_module`. Subclasses add their own settings; the tensors need no overriding."""

    def fingerprint_settings(self) -> dict[str, Any]:
        """What, besides the weights, changes the vectors (JSON-serialisable); subclasses extend it."""
        return {"class": type(self).__name__, "method": getattr(self, "method", None)}

    def fingerprint_module(self) -> nn.Module:
        """The module holding every tensor the vectors depend on (``self.module`` by default)."""
        return self.module

    def fingerprint(self) -> str:
        """A short hex digest of the settings and all weights; equal for two retrievers exactly when
        they encode alike (up to hash collisions). Cached until a tensor or a setting changes."""
        settings = self.fingerprint_settings()
        tensors = list(named_tensors(self.fingerprint_module()))
        key = (
            json.dumps(settings, sort_keys=True, default=str),
            tuple((name, t._version, t.data_ptr(), str(t.device), t.dtype) for name, t in tensors),
        )
        cached = getattr(self, "_fingerprint_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        value = tensors_digest(settings, tensors)
        self._fingerprint_cache = (key, value)
        return value

    def forget_fingerprint(self) -> None:
        """Drop the cached fingerprint (after changing weights in a way the version counter misses)."""
        self._fingerprint_cache = None


__all__ = ["FINGERPRINT_LENGTH", "VectorFingerprintMixin", "named_tensors", "tensors_digest"]
