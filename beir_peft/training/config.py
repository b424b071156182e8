"""The training settings the engine shares: the one learning-rate table and :class:`TrainingConfig`.

:class:`TrainingConfig` is what :func:`~beir_peft.training.pairs.fit` trains with (the supervised
methods, GPL's MarginMSE, DDR's REM); ART and DDR's DAM have their own configs and take their
default learning rates from the same :data:`DEFAULT_LEARNING_RATES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: Learning rates that work on all-MiniLM-L6-v2 with batch 32 (evidence: docs/results.md).
#: The paper (appendix B.1) uses 1e-2 for PT2 on BERT-base and 2e-5 for fine-tuning.
DEFAULT_LEARNING_RATES = {
    # 1e-3 is the step at which PT2-DPR is above the zero-shot backbone both in-domain and out of
    # domain (docs/results.md); 3e-3 gains more in-domain and is level out of domain.
    "pt2-dpr": 1e-3,
    # ColBERT (issue in progress; not yet tuned on data): paper 1e-2 / code 1e-3 for the prefix,
    # 3e-6 for fine-tuning BERT-base ColBERT; MiniLM is smaller and tolerates larger steps.
    "pt2-colbert": 3e-3,
    "colbert-ft": 1e-5,
    "prompt": 1e-2,
    "bitfit": 1e-3,
    "lora": 5e-4,
    # the PT2 paper's rate for its Adapter baseline (appendix B.1), not yet tuned on MiniLM
    "adapter": 3e-5,
    # DDR's REM (seed 004, section 4): 2e-5, the paper's rate for BERT-base
    "ddr": 2e-5,
    # also ART's rate for fully trained encoders (Sachan et al. 2023, section 4.1)
    "ft": 2e-5,
}
#: who mines hard negatives: the starting backbone (dense, exact search), BM25, or both with false
#: negatives guarded (DPTDR's unified mining, beir_peft.methods.hard_negatives)
NEGATIVE_MINERS = ("backbone", "bm25", "unified")
#: where the training pairs come from: the split's qrels, or the corpus alone (beir_peft.methods.corpus_pairs)
PAIR_SOURCES = ("qrels", "title", "ict")
#: accelerate's mixed-precision modes: float32 throughout, or the forward and backward under autocast
MIXED_PRECISION = ("no", "bf16", "fp16")


#: methods whose frozen backbone trains in eval mode unless ``backbone_dropout`` says otherwise.
#: PT2-DPR: decided from three seeds on SciFact and the MS MARCO slice (docs/results.md, "Three
#: seeds"): -0.0013 nDCG@10 on SciFact (p=0.06), level on the MS MARCO slice, a training step 0.44x
#: full fine-tuning's instead of 0.79x (one thread) and 2.6x less memory. The paper trains with the
#: whole model in train mode (``--backbone-dropout``, and ``--preset paper``).
BACKBONE_DROPOUT_OFF: frozenset[str] = frozenset({"pt2-dpr"})


def backbone_dropout_for(method: str, given: bool | None) -> bool:
    """``given``, or whether ``method`` keeps its backbone's dropout by default."""
    return given if given is not None else method not in BACKBONE_DROPOUT_OFF


def learning_rate_for(method: str, given: float | None) -> float:
    """``given``, or :data:`DEFAULT_LEARNING_RATES`' rate for ``method`` when it is ``None``."""
    return given if given is not None else DEFAULT_LEARNING_RATES[method]


@dataclass
class TrainingConfig:
    """Hyper-parameters of a supervised run (recorded in the saved folder's ``config.json``).

    Attributes:
        epochs: passes over the training pairs.
        batch_size: queries per batch (in-batch negatives: ``batch_size - 1`` per query).
        learning_rate: ``None`` takes :data:`DEFAULT_LEARNING_RATES` for the method.
        warmup_ratio: linear warm-up over this fraction of the steps, then linear decay (paper: 5%).
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (DPR: 2.0).
        scale: similarity scale of the loss (1 / temperature), see :class:`DualEncoderMNRLoss`.
        pair_source: where the (query, passage) pairs come from: ``"qrels"`` (the split's relevance
            judgements, default), or the corpus alone for intermediate pre-training (DPTDR):
            ``"title"`` (title -> text) or ``"ict"`` (a sentence -> its document, the Inverse Cloze
            Task); see :mod:`beir_peft.methods.corpus_pairs`.
        hard_negatives: mined negatives per query (0: in-batch negatives only).
        negative_depth: hard negatives are drawn from the miner's top ``negative_depth``.
        negative_miner: who mines them: ``"backbone"`` (the backbone as a plain sentence-transformers
            retriever, whatever the method trained; default) or ``"bm25"`` (:class:`BM25Search`,
            DPR's BM25 negatives, Karpukhin et al. 2020 section 3.2) or ``"unified"`` (DPTDR's: the
            dense miner's and BM25's candidates interleaved, false negatives guarded; see
            :func:`~beir_peft.methods.hard_negatives.unified_negatives`).
        negatives_from: a saved retriever folder (or model name) that is the dense miner instead of
            the starting backbone, e.g. the first round's trained model (``backbone`` and
            ``unified`` miners).
        false_negative_margin: ``unified`` drops candidates the dense miner scores at or above its
            score of the query's lowest-scored relevant passage minus this margin.
        in_batch_negatives: late interaction only: also score the batch's other passages.
            ``None``: ColBERT's pairwise loss when hard negatives are given, in-batch otherwise.
            Dual encoders always use in-batch negatives.
        backbone_dropout: keep the backbone's own dropout on while training (the paper's setting:
            the whole model in train mode). ``False`` puts the backbone in eval mode, so only the
            trained parts (prefix dropout) drop; attention then takes PyTorch's fused kernel, 2-3x
            faster per step with 2.6-3.3x less memory for prompt methods (docs/results.md).
            ``None``: the method's default (:data:`BACKBONE_DROPOUT_OFF`).
        gradient_checkpointing: recompute each backbone layer's activations in the backward pass
            instead of keeping them (transformers' gradient checkpointing, non-reentrant): less
            memory per step for about one more forward's time. Gradients are the same.
        max_steps: stop after this many optimizer steps (``None``: ``epochs`` full passes).
        checkpoint_every: steps between checkpoints (0: none but the final folder).
        keep_checkpoints: how many checkpoints to keep.
        seed: seeds the batch order, dropout and the negatives.
        mixed_precision: ``"no"`` (float32, default), ``"bf16"`` (CPUs with AVX-512 BF16 or AMX, and
            GPUs) or ``"fp16"`` (GPUs, with loss scaling): accelerate's autocast around each step's
            forward and loss; the trained weights and the optimizer's state stay float32.
        preset: the name of the preset the settings came from (recorded only; see :meth:`from_preset`).
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float | None = None
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 2.0
    scale: float = 20.0
    pair_source: str = "qrels"
    hard_negatives: int = 0
    negative_depth: int = 30
    negative_miner: str = "backbone"
    negatives_from: str | None = None
    false_negative_margin: float = 0.0
    in_batch_negatives: bool | None = None
    backbone_dropout: bool | None = None
    gradient_checkpointing: bool = False
    max_steps: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 42
    mixed_precision: str = "no"
    preset: str | None = None

    @classmethod
    def from_preset(cls, name: str, method: str = "pt2-dpr", **overrides: Any) -> TrainingConfig:
        """The training settings of preset ``name`` for ``method``, ``overrides`` replacing any of them.

        ``TrainingConfig.from_preset("paper")`` is Tam et al. 2022's appendix B.1 setting for
        PT2-DPR (:data:`~beir_peft.training.presets.PT2_DPR_PAPER`; its model options are
        ``train_preset("paper", "pt2-dpr").model``).
        """
        from .presets import train_preset

        unknown = sorted(set(overrides) - ({f.name for f in dataclasses.fields(cls)} - {"preset"}))
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**{**train_preset(name, method).training, **overrides, "preset": name})

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (in-batch negatives need a second pair)"),
            (self.learning_rate is None or self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.hard_negatives >= 0, "hard_negatives must be >= 0"),
            (self.negative_depth >= self.hard_negatives, "negative_depth must be >= hard_negatives"),
            (self.negative_miner in NEGATIVE_MINERS, f"negative_miner must be one of {NEGATIVE_MINERS}"),
            (self.pair_source in PAIR_SOURCES, f"pair_source must be one of {PAIR_SOURCES}"),
            (
                self.negatives_from is None or self.negative_miner != "bm25",
                "negatives_from names a dense miner; the bm25 miner takes none",
            ),
            (
                self.pair_source == "qrels" or self.hard_negatives == 0,
                "corpus pairs (pair_source title or ict) train with in-batch negatives only (hard_negatives 0)",
            ),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.scale > 0, "scale must be > 0"),
            (self.mixed_precision in MIXED_PRECISION, f"mixed_precision must be one of {MIXED_PRECISION}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def learning_rate_for(self, method: str) -> float:
        return learning_rate_for(method, self.learning_rate)

    def backbone_dropout_for(self, method: str) -> bool:
        return backbone_dropout_for(method, self.backbone_dropout)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = [
    "BACKBONE_DROPOUT_OFF",
    "DEFAULT_LEARNING_RATES",
    "MIXED_PRECISION",
    "NEGATIVE_MINERS",
    "PAIR_SOURCES",
    "TrainingConfig",
    "backbone_dropout_for",
    "learning_rate_for",
]
