"""Reduced-precision encoding: the forward pass in bfloat16 or float16, the scores in float32.

``retriever.encoding_dtype = "bfloat16"`` (or ``load(path, dtype="bfloat16")``, ``beir-peft
evaluate --dtype bfloat16``) makes every ``encode*`` call run the encoder in that dtype. Its outputs
are upcast to float32 before anything ranks by them: a half-precision matmul rounds its output to the
input's dtype and buckets nearby scores into ties (sentence-transformers and MTEB moved to float32
scoring for this reason), so searchers, MaxSim and saved vectors all see float32.

The float32 weights stay the retriever's own, untouched: inside :func:`cast_floating` each floating
parameter and buffer of the module points at a half-precision copy, and afterwards at its original
tensor again, bit for bit (a retriever keeps training, saving and fingerprinting in float32). The
copies are kept between calls, so a served model casts once, and are remade for a tensor that
changed (its version counter moved: an optimizer step, ``load_*``, ``copy_``) or moved device.
Their price is memory: half the float32 model's bytes again, for as long as the retriever
encodes in reduced precision (:meth:`EncodingPrecisionMixin.release_cast_weights` frees them).

The stock equivalent is ``SentenceTransformer(name, model_kwargs={"dtype": torch.bfloat16})``, the
path benchmarks/encode_precision.py compares against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

FLOAT32 = "float32"
#: the encoding dtypes by name (``--dtype``)
ENCODING_DTYPES: dict[str, torch.dtype] = {
    FLOAT32: torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def check_encoding_dtype(name: str) -> str:
    """``name`` if it is one of :data:`ENCODING_DTYPES`, else :class:`ConfigError` (one line)."""
    if name not in ENCODING_DTYPES:
        raise ConfigError(f"encoding dtype must be one of {', '.join(ENCODING_DTYPES)}, got {name!r}")
    return name


#: id(tensor) -> (the tensor, kept alive so that its id is not reused; (storage address, device,
#: version) when it was cast; the cast copy)
_CastCache = dict[int, tuple[torch.Tensor, tuple[int, str, int], torch.Tensor]]


@contextlib.contextmanager
def cast_floating(module: nn.Module, dtype: torch.dtype, cache: _CastCache | None = None) -> Iterator[None]:
    """Every floating parameter and buffer of ``module`` in ``dtype`` inside the block, its original
    tensor restored afterwards (the same storage: no float32 value is rounded).

    ``cache`` (a dict the caller keeps) holds the cast copies between calls: an entry is reused while
    its original tensor is the same storage at the same version, and remade otherwise.
    """
    if cache is None:
        cache = {}
    swapped: list[tuple[torch.Tensor, torch.Tensor]] = []
    tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
    try:
        for key, tensor in tensors.items():
            if not tensor.is_floating_point() or tensor.dtype == dtype:
                continue
            original = tensor.data
            stamp = (tensor.data_ptr(), str(tensor.device), tensor._version)
            entry = cache.get(key)
            if entry is None or entry[0] is not tensor or entry[1] != stamp:
                entry = cache[key] = (tensor, stamp, original.to(dtype))
            swapped.append((tensor, original))
            tensor.data = entry[2]
        yield
    finally:
        for tensor, original in swapped:
            tensor.data = original


class EncodingPrecisionMixin:
    """``encoding_dtype`` (default ``"float32"``) and :meth:`encoding_precision` for a retriever.

    The retriever's :meth:`fingerprint_module` is what gets cast, the module that holds every tensor
    its vectors depend on. The dtype is part of the fingerprint when it is not float32 (other vectors,
    another cache key; float32 keeps the digests saved indexes already carry).
    """

    _encoding_dtype: str = FLOAT32

    @property
    def encoding_dtype(self) -> str:
        """The dtype the encoder runs in: ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
        return self._encoding_dtype

    @encoding_dtype.setter
    def encoding_dtype(self, name: str) -> None:
        self._encoding_dtype = check_encoding_dtype(name)
        if name == FLOAT32:
            self.release_cast_weights()

    @contextlib.contextmanager
    def encoding_precision(self) -> Iterator[None]:
        """The encoder in :attr:`encoding_dtype` inside the block (nothing to do for float32)."""
        if self._encoding_dtype == FLOAT32:
            yield
            return
        cache = self.__dict__.setdefault("_cast_weights", {})
        with cast_floating(self.fingerprint_module(), ENCODING_DTYPES[self._encoding_dtype], cache):
            yield

    def release_cast_weights(self) -> None:
        """Free the half-precision copies kept between calls (they are remade when next needed)."""
        self.__dict__.pop("_cast_weights", None)

    def precision_settings(self) -> dict[str, Any]:
        """``{"encoding_dtype": ...}`` for a fingerprint; empty for float32."""
        return {} if self._encoding_dtype == FLOAT32 else {"encoding_dtype": self._encoding_dtype}

    def fingerprint_settings(self) -> dict[str, Any]:
        """The other settings plus :meth:`precision_settings`."""
        others = getattr(super(), "fingerprint_settings", None)
        return {**(others() if others is not None else {}), **self.precision_settings()}


__all__ = ["ENCODING_DTYPES", "EncodingPrecisionMixin", "cast_floating", "check_encoding_dtype"]
