"""beir_peft: parameter-efficient and domain-adapted dense retrievers for BEIR.

``from beir_peft import PT2DPR`` gives a BEIR dense model, ``PT2ColBERT`` a late-interaction one
(searched with ``beir_peft.search.maxsim.MaxSimSearch``); ``beir_peft.load(folder)`` reloads any
saved retriever; ``beir-peft evaluate`` / ``beir-peft train`` are the command line.
"""

__version__ = "0.1.0"

from .artifacts import load  # noqa: E402
from .models import PT2DPR, DenseRetriever, PT2ColBERT, TunedRetriever, build_retriever  # noqa: E402

__all__ = [
    "PT2ColBERT",
    "PT2DPR",
    "DenseRetriever",
    "TunedRetriever",
    "build_retriever",
    "load",
    "__version__",
]
