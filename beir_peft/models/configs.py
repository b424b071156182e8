"""What a retriever folder's ``config.json`` holds: one dataclass per method, over shared bases.

Shaped like peft's ``tuners/<method>/config.py`` (``PrefixTuningConfig(PromptLearningConfig)``):
:class:`RetrieverConfig` is what every retriever records (method, backbone, the backbone's
fingerprint); a family base adds what its retrievers share (:class:`TunedConfig`: the
single-vector dual encoders of :mod:`beir_peft.models.tuned`; :class:`ColBERTConfig`: the
late-interaction retrievers of :mod:`beir_peft.models.colbert`); :class:`PromptConfig` and
:class:`DeepPromptConfig` are the prompt options PT2-DPR and PT2-ColBERT share; a method's own
class adds only the fields that method has:

=============  ======================  ==================================================
method         config                  its own fields
=============  ======================  ==================================================
pt2-dpr        PT2DPRConfig            share_prompts, the deep prompt's
prompt         PromptTuningConfig      share_prompts, prefix_length
ft, bitfit     WeightTuningConfig      separate_encoders
lora           LoRATuningConfig        separate_encoders, lora_*, merge_lora
adapter        AdapterTuningConfig     separate_encoders, adapter_reduction_factor, adapter_init
ddr            DDRConfig               separate_encoders, rem_*, adapter_*, lora_dropout,
                                       lora_targets, merge_lora
pt2-colbert    PT2ColBERTConfig        the deep prompt's
colbert-ft     ColBERTConfig           (none)
=============  ======================  ==================================================

Calling a family base builds the config of the method it is given (``TunedConfig(method="lora",
lora_r=4)`` is a :class:`LoRATuningConfig`; peft's ``PEFT_TYPE_TO_CONFIG_MAPPING`` does this
with a table), and so does ``from_dict``. Both accept any field of the family and drop the ones
the method does not have: folders written before the configs were split record every field of
their family (an ``ft`` folder has ``prefix_length`` and ``gate``). A field no method of the
family has is an error. Each field's ``metadata["help"]`` can feed a command line's ``--help``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..encoders.backbone import DEFAULT_BACKBONE, backbone_fingerprint, check_backbone_fingerprint
from ..encoders.sequential_adapter import ADAPTER_INITS
from ..errors import ArtifactError, ConfigError
from ..registry import COLBERT, DDR, DENSE, METHOD_TABLE

logger = logging.getLogger(__name__)

#: token similarities a ColBERT retriever can score with (its vectors are L2-normalised)
SIMILARITIES = ("cosine",)
#: how a prefix starts: the backbone's keys/values of real text, or N(0, init_std)
PROMPT_INITS = ("text", "random")
SCORE_FUNCTIONS = ("dot", "cos_sim")


def _option(default: Any = dataclasses.MISSING, help: str = "", **kwargs) -> Any:
    """A config field with its ``--help`` text."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


class _ByMethod(type):
    """Calling a family base (:class:`TunedConfig`, :class:`ColBERTConfig`) builds its method's config."""

    def __call__(cls, *args, **fields):
        if "_members" not in cls.__dict__ or args:
            return super().__call__(*args, **fields)
        method = fields.get("method", cls.default_method)
        member = cls._members.get(method)
        if member is None:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(cls._members)}")
        return super(_ByMethod, member).__call__(**member.own_fields({**fields, "method": method}))


@dataclass
class RetrieverConfig(metaclass=_ByMethod):
    """What every saved retriever records; the base of every config (saved as ``config.json``)."""

    #: the methods this class is the config of (set by :func:`_register`)
    methods: ClassVar[tuple[str, ...]] = ()

    method: str = _option(help="The retriever's method.")
    backbone: str = _option(DEFAULT_BACKBONE, help="The frozen backbone: a hub name or a local folder.")
    backbone_fingerprint: str | None = _option(
        None, help="Identity of the backbone the weights belong to (filled in when built)."
    )

    # ------------------------------------------------------------------ families
    @classmethod
    def family(cls) -> type[RetrieverConfig]:
        """The family base this config belongs to."""
        return next(klass for klass in cls.__mro__ if "_members" in klass.__dict__)

    @classmethod
    def field_names(cls) -> set[str]:
        """This class's fields."""
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def family_field_names(cls) -> set[str]:
        """The fields of every method of this config's family."""
        return set().union(*(member.field_names() for member in cls.family()._members.values()))

    @classmethod
    def own_fields(cls, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` less those of the family that this method does not have.

        A field unknown to the family is kept, so that the constructor refuses it.
        """
        family, own = cls.family_field_names(), cls.field_names()
        return {k: v for k, v in fields.items() if k in own or k not in family}

    def pin_backbone(self, model) -> None:
        """Record the backbone fingerprint of ``model`` (a sentence-transformers pipeline) in a new
        config; refuse a ``model`` other than the one a loaded config records (:class:`ArtifactError`)."""
        if self.backbone_fingerprint is None:
            self.backbone_fingerprint = backbone_fingerprint(model)
        else:
            check_backbone_fingerprint(model, self.backbone_fingerprint, where=self.backbone)

    # ------------------------------------------------------------------ checks
    def __post_init__(self):
        for klass in reversed(type(self).__mro__):
            check = klass.__dict__.get("_check")
            if check is not None:
                check(self)

    def _check(self) -> None:
        if self.method not in self.methods:
            raise ConfigError(
                f"{type(self).__name__} is the config of {', '.join(self.methods)}, not {self.method!r}"
            )

    # ------------------------------------------------------------------ config.json
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> RetrieverConfig:
        """Rebuild from saved fields; a field no method of the family has is an
        :class:`ArtifactError` naming ``where``, one of another method of the family is dropped."""
        unknown = sorted(set(data) - cls.family_field_names())
        if unknown:
            raise ArtifactError(
                f"{where}: unknown field(s) {', '.join(unknown)} for a {data.get('method')} retriever"
            )
        return cls.family()(**data)

    def without_text_init(self) -> RetrieverConfig:
        """This config with no text initialisation to compute: for a retriever whose trained
        weights are loaded next and replace its prompt."""
        if isinstance(self, DeepPromptConfig):
            return dataclasses.replace(self, init="random")
        return self


def config_from_options(
    family: type[RetrieverConfig], what: str, options: Mapping[str, Any], **fixed: Any
) -> RetrieverConfig:
    """The config a retriever's constructor keywords (or ``--set`` options) describe.

    ``options`` may hold any field of ``family`` but those in ``fixed`` (which the caller sets); an
    unknown one is a :class:`ConfigError` naming ``what``. Fields of another method of the family
    are dropped with a warning.
    """
    unknown = sorted(set(options) - (family.family_field_names() - set(fixed)))
    if unknown:
        raise ConfigError(f"unknown option(s) for {what}: {', '.join(unknown)}")
    config = family(**options, **fixed)
    ignored = sorted(set(options) - type(config).field_names())
    if ignored:
        logger.warning("%s has no option(s) %s; ignored", config.method, ", ".join(ignored))
    return config


# ---------------------------------------------------------------------------------------- prompts
@dataclass
class PromptConfig:
    """A trained prompt's length (PT2-DPR, PT2-ColBERT, input-layer prompt tuning)."""

    prefix_length: int = _option(32, help="Prompt tokens (PT2-DPR paper: 100, its code: 64).")


@dataclass
class DeepPromptConfig(PromptConfig):
    """P-Tuning v2's deep prompt (trainable keys/values on every layer), shared by PT2-DPR and
    PT2-ColBERT; see :class:`~beir_peft.encoders.deep_prompt.DeepPrompt` and docs/pt2_dpr.md."""

    prefix_dropout: float = _option(0.1, help="Dropout on the prefix (paper: 0.1).")
    projection: bool = _option(False, help="Prefix-tuning's reparameterisation MLP (P-Tuning v2: off).")
    projection_hidden: int = _option(512, help="Hidden width of the reparameterisation MLP.")
    gate: bool = _option(True, help="Zero-initialised gate on the prefix (beir_peft's recipe; paper: none).")
    init: str = _option(
        "text", help="'text': the backbone's own keys/values of real text; 'random': N(0, init_std)."
    )
    init_std: float = _option(1.0, help="Std of a random prefix (P-Tuning v2's nn.Embedding: 1).")
    init_text: str | None = _option(None, help="Text a 'text' prefix starts from (default: neutral English).")
    shift_positions: bool = _option(False, help="Start real tokens' positions after the prefix (peft does).")

    def _check(self) -> None:
        if self.init not in PROMPT_INITS:
            raise ConfigError(f"init must be 'text' or 'random', got {self.init!r}")

    def deep_prompt_options(self) -> dict[str, Any]:
        """Keywords of :func:`~beir_peft.encoders.deep_prompt.new_deep_prompts`."""
        return {
            "length": self.prefix_length,
            "dropout": self.prefix_dropout,
            "projection": self.projection,
            "projection_hidden": self.projection_hidden,
            "gate": self.gate,
            "init": self.init,
            "init_std": self.init_std,
            "init_text": self.init_text,
        }


# ---------------------------------------------------------------------------------------- dual encoders
@dataclass
class TunedConfig(RetrieverConfig):
    """A single-vector dual encoder on a frozen backbone (:class:`~beir_peft.models.tuned.TunedRetriever`).

    ``TunedConfig(method=..., **fields)`` is the config of that method. Defaults are the recipe
    documented in docs/pt2_dpr.md (the paper's values are noted per field).
    """

    _members: ClassVar[dict[str, type[RetrieverConfig]]] = {}
    default_method: ClassVar[str] = "pt2-dpr"

    pooling: str | None = _option(
        None, help="'cls' or 'mean'; default: the backbone's own (MiniLM: mean; paper's BERT DPR: cls)."
    )
    score_function: str = _option("dot", help="'dot' (paper: inner product) or 'cos_sim'.")
    normalize: bool | None = _option(
        None,
        help="Unit-length embeddings; default: as the backbone's pipeline (MiniLM ends with Normalize); "
        "False: raw pooled vectors (GPL's and ART's dot-product students).",
    )
    max_seq_length: int | None = _option(
        None, help="Tokens per text; default: the backbone's own (MiniLM: 256; paper: 256)."
    )

    def _check(self) -> None:
        if self.score_function not in SCORE_FUNCTIONS:
            raise ConfigError(f"score_function must be 'dot' or 'cos_sim', got {self.score_function!r}")


@dataclass
class DualPromptConfig(TunedConfig):
    """A dual encoder trained through prompts: one per side (the authors' DPR code) or one shared."""

    share_prompts: bool = _option(False, help="One prompt for queries and passages (paper's code: two).")

    @classmethod
    def own_fields(cls, fields: Mapping[str, Any]) -> dict[str, Any]:
        """As :meth:`RetrieverConfig.own_fields`; ``separate_encoders`` is refused, not dropped."""
        if fields.get("separate_encoders"):
            raise ConfigError(
                f"separate_encoders is for weight methods (ft, bitfit, lora, adapter); {fields.get('method')} already "
                "has one prompt per side (share_prompts=False)"
            )
        return super().own_fields(fields)


@dataclass
class PT2DPRConfig(DeepPromptConfig, DualPromptConfig):
    """PT2-DPR (Tam et al. 2022, section 4.2): a deep prompt per side."""

    method: str = _option("pt2-dpr", help="pt2-dpr")


@dataclass
class PromptTuningConfig(PromptConfig, DualPromptConfig):
    """Input-layer prompt tuning (Lester et al. 2021): trainable input embeddings per side."""

    method: str = _option("prompt", help="prompt")


@dataclass
class WeightTuningConfig(TunedConfig):
    """Methods that train the backbone's own weights (all of them, or BitFit's biases)."""

    method: str = _option("ft", help="ft or bitfit")
    separate_encoders: bool = _option(
        False, help="One copy of the backbone per side (DPR's and ART's dual encoder) instead of one shared."
    )


@dataclass
class LoRAOptions:
    """Options of every LoRA a dual encoder carries (``lora``, and DDR's relevance module)."""

    lora_dropout: float = _option(0.1, help="Dropout on the LoRA input.")
    lora_targets: list[str] = _option(
        default_factory=lambda: ["query", "value"], help="Modules LoRA is injected into."
    )
    merge_lora: bool = _option(
        False, help="Fold LoRA into the backbone's weights (inference only; set by `ddr assemble`)."
    )


@dataclass
class LoRATuningConfig(LoRAOptions, WeightTuningConfig):
    """LoRA (Hu et al. 2021, through peft) on the backbone's attention."""

    method: str = _option("lora", help="lora")
    lora_r: int = _option(8, help="LoRA rank.")
    lora_alpha: int = _option(16, help="LoRA scaling numerator (scale = alpha / r).")


@dataclass
class AdapterTuningConfig(WeightTuningConfig):
    """Sequential bottleneck adapters after every feed-forward block: the PT2 paper's Adapter
    baseline (Tam et al. 2022, seed 000, section 4.2 and appendix B.1: adapter-transformers'
    ``PfeifferConfig``, lr 3e-5, 50 epochs); see :mod:`beir_peft.encoders.sequential_adapter`."""

    method: str = _option("adapter", help="adapter")
    adapter_reduction_factor: int = _option(
        16, help="Bottleneck = hidden size / this (PfeifferConfig: 16; MiniLM: 24, BERT-base: 48)."
    )
    adapter_init: str = _option(
        "bert",
        help="'bert': N(0, 0.02) weights, as adapter-transformers 2.2 (the paper's); 'zeros': a zero "
        "up-projection, so that the untrained model is exactly the backbone.",
    )

    def _check(self) -> None:
        if self.adapter_init not in ADAPTER_INITS:
            raise ConfigError(
                f"adapter_init must be one of {', '.join(ADAPTER_INITS)}, got {self.adapter_init!r}"
            )
        if self.adapter_reduction_factor < 1:
            raise ConfigError(f"adapter_reduction_factor must be >= 1, got {self.adapter_reduction_factor}")


@dataclass
class DDRConfig(LoRAOptions, WeightTuningConfig):
    """DDR's relevance module (Zhan et al. 2022, seed 004, section 3.2): LoRA and/or parallel adapters."""

    method: str = _option("ddr", help="ddr")
    rem_lora: bool = _option(True, help="LoRA on attention query/value.")
    rem_lora_r: int = _option(192, help="The relevance module's LoRA rank (the authors' code: 192).")
    rem_lora_alpha: int = _option(192, help="The relevance module's LoRA alpha.")
    rem_adapter: bool = _option(True, help="A parallel adapter beside every feed-forward block.")
    adapter_bottleneck: int = _option(192, help="Parallel adapter bottleneck (the authors' code: 192).")
    adapter_scaling: float = _option(1.0, help="Parallel adapter output scale.")

    def _check(self) -> None:
        if not (self.rem_lora or self.rem_adapter):
            raise ConfigError(
                "a DDR relevance module needs LoRA (rem_lora) and/or a parallel adapter (rem_adapter)"
            )


# ---------------------------------------------------------------------------------------- late interaction
@dataclass
class ColBERTConfig(RetrieverConfig):
    """A ColBERT retriever (:class:`~beir_peft.models.colbert.PT2ColBERT`); alone, ``colbert-ft``'s config.

    ``ColBERTConfig(method=..., **fields)`` is the config of that method. Defaults follow the
    paper's appendix B.2 (32 query vectors, 300 document vectors, dimension 128, prefix length 64
    as in the evaluated checkpoint) and ColBERT's tokenisation.
    """

    _members: ClassVar[dict[str, type[RetrieverConfig]]] = {}
    default_method: ClassVar[str] = "pt2-colbert"

    method: str = _option("colbert-ft", help="pt2-colbert or colbert-ft")
    dim: int = _option(128, help="Token vector dimension (paper: 128).")
    query_maxlen: int = _option(32, help="Query vectors (paper: 32).")
    doc_maxlen: int = _option(
        300, help="Document tokens (paper: 300, Thakur et al. 2021); capped at the backbone's positions."
    )
    query_marker: str | None = _option("[unused0]", help="ColBERT's [Q] token (None: no marker).")
    doc_marker: str | None = _option("[unused1]", help="ColBERT's [D] token (None: no marker).")
    mask_punctuation: bool = _option(True, help="Punctuation tokens are not document vectors (ColBERT).")
    query_augmentation: bool = _option(True, help="Pad queries with [MASK] to query_maxlen (ColBERT).")
    attend_to_mask_tokens: bool = _option(
        False,
        help="Real query tokens attend to the [MASK] padding (ColBERT v1 / PT-Retrieval: no; ColBERTv2 option).",
    )
    similarity: str = _option("cosine", help="Token similarity (L2-normalised token vectors).")

    def _check(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.dim < 1:
            raise ConfigError(f"dim must be >= 1, got {self.dim}")
        if self.query_maxlen < 4 or self.doc_maxlen < 4:
            raise ConfigError(
                f"query_maxlen and doc_maxlen must be >= 4 (CLS, marker, a token, SEP), got "
                f"{self.query_maxlen} and {self.doc_maxlen}"
            )


@dataclass
class PT2ColBERTConfig(DeepPromptConfig, ColBERTConfig):
    """PT2-ColBERT (Tam et al. 2022, appendix B.2): one deep prompt shared by queries and documents."""

    method: str = _option("pt2-colbert", help="pt2-colbert")
    prefix_length: int = _option(
        64, help="Prompt tokens (paper: 64, the evaluated checkpoint; its script: 180)."
    )


def _register(family: type[RetrieverConfig], table: Mapping[str, type[RetrieverConfig]]) -> None:
    """Make each class of ``table`` the config of its methods in ``family`` (in the table's order)."""
    family._members.update(table)
    for config_class in set(table.values()):
        config_class.methods = tuple(method for method, member in table.items() if member is config_class)


#: the config base of each family of the method table: ``TunedConfig(method=...)`` builds any of its
#: family's methods' configs, ``load`` parses a folder of that family with it
FAMILY_CONFIGS: dict[str, type[RetrieverConfig]] = {
    DENSE: TunedConfig,
    DDR: TunedConfig,
    COLBERT: ColBERTConfig,
}

# method -> its config, from the method table's rows (in table order: error messages list them so)
for _base in dict.fromkeys(FAMILY_CONFIGS.values()):
    _register(
        _base,
        {spec.name: spec.config_class() for spec in METHOD_TABLE if FAMILY_CONFIGS[spec.family] is _base},
    )
del _base


__all__ = [
    "FAMILY_CONFIGS",
    "AdapterTuningConfig",
    "DDRConfig",
    "ColBERTConfig",
    "DeepPromptConfig",
    "DualPromptConfig",
    "LoRAOptions",
    "LoRATuningConfig",
    "PT2ColBERTConfig",
    "PT2DPRConfig",
    "PromptConfig",
    "PromptTuningConfig",
    "RetrieverConfig",
    "SIMILARITIES",
    "TunedConfig",
    "WeightTuningConfig",
    "config_from_options",
]
