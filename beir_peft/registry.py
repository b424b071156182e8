"""The one table of methods: each method's family, retriever class and roles (peft's ``mapping.py``).

A row says what a method *is* (its family, the class that builds and reloads it, its config) and where it may
be used (trained by ``beir-peft train``, a GPL/ART student, sharing a backbone in memory, served
with other domains); the table knows nothing of how any method works. Every method vocabulary of
the package (``TunedConfig``'s methods, the CLI's ``--help`` choices, the servable and shareable
methods, GPL's and ART's students) is derived from it, so a new method is one row here plus its own
code.

A retriever's *kind* says how it is searched, and each retriever class declares it as the class
attribute ``retriever_kind``: :data:`SINGLE_VECTOR` (one vector per text, dot or cosine: exact or
faiss search), :data:`LATE_INTERACTION` (token vectors scored by MaxSim: ``MaxSimSearch``) or
:data:`SEARCHER` (a BEIR search class such as BM25, which searches by itself). Search, compare and
serving ask :func:`retriever_kind`, never a method name or a score-function string.

Classes are named as ``"module:Class"`` and imported only when asked for (as transformers' auto
mappings do), so this module sits below every other one and imports none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

#: one vector per text, scored by dot product or cosine (exact or faiss search)
SINGLE_VECTOR = "single-vector"
#: one vector per token, scored by MaxSim (``beir_peft.search.maxsim.MaxSimSearch``)
LATE_INTERACTION = "late-interaction"
#: a BEIR search class that searches by itself (BM25)
SEARCHER = "searcher"
KINDS = (SINGLE_VECTOR, LATE_INTERACTION, SEARCHER)

#: families: which config a method's folder holds and which class family builds it
DENSE = "dense"  # TunedConfig: a single-vector retriever on a frozen or tuned backbone
COLBERT = "late-interaction"  # ColBERTConfig: PT2-ColBERT and its full fine-tuning
DDR = "ddr"  # TunedConfig: a relevance module on a domain adaption module
FAMILY_KINDS = {DENSE: SINGLE_VECTOR, COLBERT: LATE_INTERACTION, DDR: SINGLE_VECTOR}


@dataclass(frozen=True)
class MethodSpec:
    """One row of :data:`METHOD_TABLE`."""

    name: str
    family: str
    #: ``"module:Class"`` of the retriever class that builds it and that ``load`` returns
    retriever: str
    #: ``"module:Class"`` of its config (what its ``config.json`` holds)
    config: str
    #: trains prompts over a frozen backbone (deep or input-layer prompts)
    prompt: bool = False
    #: trains the whole backbone (full fine-tuning)
    trains_backbone: bool = False
    #: trained on relevance pairs by ``beir-peft train``
    trainable: bool = False
    #: a student of GPL and ART
    student: bool = False
    #: leaves the backbone's weights alone, so its retrievers may share one backbone in memory
    shareable: bool = False
    #: may be served with other domains on one backbone (``beir_peft.load_domains``)
    servable: bool = False

    @property
    def kind(self) -> str:
        return FAMILY_KINDS[self.family]

    def retriever_class(self) -> type:
        """The retriever class, imported now."""
        return _import(self.retriever)

    def config_class(self) -> type:
        """The config class, imported now."""
        return _import(self.config)


def _import(qualified: str) -> type:
    module, _, name = qualified.partition(":")
    return getattr(importlib.import_module(module), name)


_TUNED = "beir_peft.models.tuned:TunedRetriever"
_COLBERT = "beir_peft.models.colbert:PT2ColBERT"
_CONFIGS = "beir_peft.models.configs:"

#: every method, in the order lists and ``--help`` choices show them
METHOD_TABLE: tuple[MethodSpec, ...] = (
    MethodSpec("pt2-dpr", DENSE, "beir_peft.models.tuned:PT2DPR", _CONFIGS + "PT2DPRConfig", prompt=True,
               trainable=True, student=True, shareable=True, servable=True),
    MethodSpec("prompt", DENSE, _TUNED, _CONFIGS + "PromptTuningConfig", prompt=True, trainable=True,
               shareable=True),
    MethodSpec("bitfit", DENSE, _TUNED, _CONFIGS + "WeightTuningConfig", trainable=True),
    MethodSpec("lora", DENSE, _TUNED, _CONFIGS + "LoRATuningConfig", trainable=True, student=True,
               servable=True),
    MethodSpec("adapter", DENSE, _TUNED, _CONFIGS + "AdapterTuningConfig", trainable=True),
    MethodSpec("ft", DENSE, _TUNED, _CONFIGS + "WeightTuningConfig", trains_backbone=True, trainable=True,
               student=True),
    MethodSpec("ddr", DDR, "beir_peft.models.ddr:DDR", _CONFIGS + "DDRConfig"),
    MethodSpec("pt2-colbert", COLBERT, _COLBERT, _CONFIGS + "PT2ColBERTConfig", prompt=True, trainable=True,
               shareable=True, servable=True),
    MethodSpec("colbert-ft", COLBERT, _COLBERT, _CONFIGS + "ColBERTConfig", trains_backbone=True,
               trainable=True),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in METHOD_TABLE}


def method_spec(method: str) -> MethodSpec:
    """The row of ``method``; an unknown one is a :class:`ConfigError` naming the known ones."""
    spec = _BY_NAME.get(method)
    if spec is None:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(_BY_NAME)}")
    return spec


def methods(*, family: str | tuple[str, ...] | None = None, **roles: bool) -> tuple[str, ...]:
    """Method names in table order, of ``family`` (one or several) and with every given role.

    >>> methods(family=COLBERT)
    ('pt2-colbert', 'colbert-ft')
    >>> methods(servable=True)
    ('pt2-dpr', 'lora', 'pt2-colbert')
    """
    families = (family,) if isinstance(family, str) else family
    unknown = sorted(set(roles) - set(MethodSpec.__dataclass_fields__))
    if unknown:
        raise TypeError(f"not a MethodSpec role: {', '.join(unknown)}")
    return tuple(
        spec.name
        for spec in METHOD_TABLE
        if (families is None or spec.family in families)
        and all(getattr(spec, role) == wanted for role, wanted in roles.items())
    )


def student_methods() -> tuple[str, ...]:
    """GPL's and ART's students: full fine-tuning (both papers' student) first, then the others."""
    students = methods(student=True)
    return tuple(sorted(students, key=lambda name: not _BY_NAME[name].trains_backbone))


def retriever_kind(model: Any) -> str:
    """How ``model`` is searched: its class's ``retriever_kind``; a model that declares none is a
    BEIR search class when it has a ``search`` method and no ``encode_queries``, else single-vector."""
    kind = getattr(model, "retriever_kind", None)
    if kind is not None:
        return kind
    if callable(getattr(model, "search", None)) and not callable(getattr(model, "encode_queries", None)):
        return SEARCHER
    return SINGLE_VECTOR


__all__ = [
    "COLBERT",
    "DDR",
    "DENSE",
    "FAMILY_KINDS",
    "KINDS",
    "LATE_INTERACTION",
    "METHOD_TABLE",
    "SEARCHER",
    "SINGLE_VECTOR",
    "MethodSpec",
    "method_spec",
    "methods",
    "retriever_kind",
    "student_methods",
]
