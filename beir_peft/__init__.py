"""beir_peft: parameter-efficient and domain-adapted dense retrievers for BEIR.

``from beir_peft import PT2DPR`` gives a BEIR dense model, ``PT2ColBERT`` a late-interaction one
(searched with ``beir_peft.search.maxsim.MaxSimSearch``), ``DDR`` a relevance module on a domain
module; ``beir_peft.load(folder)`` reloads any saved retriever, and ``beir_peft.load_domains({name:
folder})`` serves many of them from one backbone in mixed batches. GPL and ART live in
``beir_peft.methods.gpl`` / ``beir_peft.methods.art``. ``beir-peft`` is the command line (evaluate,
train, adapt gpl|art, ddr dam|rem|assemble, analyze, compare).
"""

from .models import DDR, PT2DPR, DenseRetriever, PT2ColBERT, TunedRetriever, build_retriever, load
from .serving import DomainServer, load_domains
from .versions import __version__

__all__ = [
    "DDR",
    "PT2ColBERT",
    "PT2DPR",
    "DenseRetriever",
    "DomainServer",
    "TunedRetriever",
    "build_retriever",
    "load",
    "load_domains",
    "__version__",
]
