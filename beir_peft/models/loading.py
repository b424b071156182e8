"""Retrievers by method name or saved folder: :func:`new_retriever` (an untrained one of any method),
:func:`load` (any beir_peft folder) and :func:`load_model` (a folder or a sentence-transformers model).

The CLI's ``--model bm25`` (a searcher, not a model) is resolved a layer above, by
:func:`beir_peft.retrievers.load_retriever`.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import (
    CONFIG_NAME,
    FOLDER_METADATA,
    WEIGHTS_NAME,
    is_retriever_folder,
    read_config,
    read_weights,
)
from ..encoders.backbone import DEFAULT_BACKBONE, load_backbone
from ..errors import ArtifactError
from ..registry import COLBERT, METHOD_TABLE, method_spec
from .base import DenseRetriever
from .colbert import PT2ColBERT
from .configs import FAMILY_CONFIGS, LoRAOptions
from .precision import check_encoding_dtype
from .tuned import build_retriever

#: sentence-transformers' similarity names -> BEIR's score function names
_SCORE_FUNCTIONS = {"cosine": "cos_sim", "dot": "dot"}


def new_retriever(method: str, backbone: str = DEFAULT_BACKBONE, **options):
    """An untrained ``method`` retriever on ``backbone``: ``build_retriever`` for single-vector and DDR
    methods, :class:`~beir_peft.models.colbert.PT2ColBERT` for late-interaction ones."""
    if method_spec(method).family == COLBERT:
        return PT2ColBERT(backbone, method=method, **options)
    return build_retriever(method, backbone, **options)


def load(path: str | Path, device: str | None = None, dtype: str = "float32"):
    """Load any saved beir_peft retriever folder (the method is read from its ``config.json``).

    The retriever is the class the method table names for the method (:mod:`beir_peft.registry`),
    the one :func:`~beir_peft.models.tuned.build_retriever` builds. ``dtype``: the dtype it encodes
    in (``"bfloat16"``, ``"float16"``; :mod:`~beir_peft.models.precision`); weights stay float32.
    """
    check_encoding_dtype(dtype)
    path = Path(path).expanduser()
    config = read_config(path)
    method = config["method"]
    if method not in {spec.name for spec in METHOD_TABLE}:
        known = ", ".join(sorted(spec.name for spec in METHOD_TABLE))
        raise ArtifactError(f"{path / CONFIG_NAME}: unknown method {method!r} (this beir_peft knows {known})")
    spec = method_spec(method)
    fields = {k: v for k, v in config.items() if k not in FOLDER_METADATA}
    saved = FAMILY_CONFIGS[spec.family].from_dict(fields, where=str(path / CONFIG_NAME))
    # The saved weights replace the prefix (and ColBERT's linear layer): skip the text initialisation.
    retriever = spec.retriever_class()(config=saved.without_text_init())
    retriever.config = saved
    retriever.load_trainable_state_dict(read_weights(path), where=str(path / WEIGHTS_NAME))
    if isinstance(saved, LoRAOptions) and saved.merge_lora:
        retriever.merge_lora()
    if device is not None:
        retriever.to(device)
    retriever.encoding_dtype = dtype
    return retriever


def load_model(name_or_path: str | None = None, device: str | None = None, dtype: str = "float32"):
    """A saved retriever folder, or a sentence-transformers model (name or folder) wrapped for BEIR.

    A plain sentence-transformers model keeps its own similarity (``cosine`` -> ``cos_sim``).
    ``dtype``: the encoding dtype, as for :func:`load`.
    """
    check_encoding_dtype(dtype)
    name_or_path = name_or_path or DEFAULT_BACKBONE
    path = Path(name_or_path).expanduser()
    if is_retriever_folder(path):  # a sentence-transformers folder has no weights.safetensors
        return load(path, device=device, dtype=dtype)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"{path}: a model is a folder or a model name, not a file")
    model = load_backbone(name_or_path, device=device)
    similarity = getattr(model, "similarity_fn_name", None) or "cosine"
    if similarity not in _SCORE_FUNCTIONS:
        raise ArtifactError(
            f"{name_or_path}: similarity {similarity!r} is not one BEIR can rank by (cosine or dot)"
        )
    retriever = DenseRetriever(model, score_function=_SCORE_FUNCTIONS[similarity])
    retriever.name_or_path = str(name_or_path)
    retriever.encoding_dtype = dtype
    return retriever
