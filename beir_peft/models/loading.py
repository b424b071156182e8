"""Turn a model name or folder into a BEIR dense model: a saved beir_peft folder or any sentence-transformers model.

The CLI's ``--model bm25`` (a searcher, not a model) is resolved a layer above, by
:func:`beir_peft.retrievers.load_retriever`.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import is_retriever_folder, load
from ..encoders.backbone import DEFAULT_BACKBONE, load_backbone
from ..errors import ArtifactError
from .base import DenseRetriever

#: sentence-transformers' similarity names -> BEIR's score function names
_SCORE_FUNCTIONS = {"cosine": "cos_sim", "dot": "dot"}


def load_model(name_or_path: str | None = None, device: str | None = None):
    """A saved retriever folder, or a sentence-transformers model (name or folder) wrapped for BEIR.

    A plain sentence-transformers model keeps its own similarity (``cosine`` -> ``cos_sim``).
    """
    name_or_path = name_or_path or DEFAULT_BACKBONE
    path = Path(name_or_path).expanduser()
    if is_retriever_folder(path):  # a sentence-transformers folder has no weights.safetensors
        return load(path, device=device)
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
    return retriever
