"""Versions of the libraries that shape a result, recorded in every saved folder and result file."""

from __future__ import annotations

import platform
from importlib import metadata

#: beir_peft's own version (setup.cfg reads it from here; ``beir_peft.__version__`` is this)
__version__ = "0.1.0"


def _version(*distributions: str) -> str:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def library_versions() -> dict[str, str]:
    """``{library: version}`` for beir_peft, beir, sentence-transformers, transformers, peft, torch, faiss, pytrec_eval, python."""
    return {
        "beir_peft": __version__,
        "beir": _version("beir"),
        "sentence-transformers": _version("sentence-transformers"),
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "torch": _version("torch"),
        "faiss": _version("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss"),
        "pytrec_eval": _version("pytrec-eval-terrier", "pytrec_eval"),
        "python": platform.python_version(),
    }
