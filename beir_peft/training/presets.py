"""Named training presets: every model and training option of a paper's setting at once.

``beir-peft train pt2-dpr --preset paper`` (or :meth:`TrainingConfig.from_preset
<beir_peft.training.config.TrainingConfig.from_preset>` plus :attr:`TrainPreset.model`) gives
Tam et al. 2022 (seed 000), appendix B.1's PT2-DPR setting; options given explicitly override it.
The defaults of ``beir-peft train`` are a different recipe, tuned for a strong pretrained
retriever (docs/pt2_dpr.md lists both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class TrainPreset:
    """One method's setting from a paper.

    Attributes:
        name: what ``--preset`` calls it.
        method: the method it is for (``pt2-dpr``).
        model: :class:`~beir_peft.models.tuned.TunedConfig` options.
        training: :class:`~beir_peft.training.config.TrainingConfig` fields.
        source: where in the paper the values come from.
    """

    name: str
    method: str
    model: Mapping[str, Any]
    training: Mapping[str, Any]
    source: str


#: Tam et al. 2022, appendix B.1 ("DPR with P-tuning v2"), and the DPR recipe it trains with
PT2_DPR_PAPER = TrainPreset(
    name="paper",
    method="pt2-dpr",
    model=MappingProxyType(
        {
            "prefix_length": 100,
            "prefix_dropout": 0.1,
            "gate": False,  # P-Tuning v2: prefix and tokens share one softmax
            "init": "random",  # nn.Embedding prefix, N(0, 1)
            "init_std": 1.0,
            "share_prompts": False,  # separate question and passage prefixes (the authors' code)
            "projection": False,
            "shift_positions": False,
            "pooling": "cls",  # DPR scores [CLS] vectors
            "score_function": "dot",
            "max_seq_length": 256,
        }
    ),
    training=MappingProxyType(
        {
            # "up to 40 epochs for large datasets (NQ, TriviaQA, SQuAD, Multi)"; 100 for the small ones
            "epochs": 40,
            "batch_size": 128,
            "learning_rate": 1e-2,
            "warmup_ratio": 0.05,  # linear schedule with 5% warm-up
            "weight_decay": 0.0,  # Adam
            "scale": 1.0,  # DPR's NLL over raw inner products: no temperature
            "hard_negatives": 1,  # in-batch negatives plus one hard negative per question
            "negative_miner": "bm25",  # DPR's hard negatives are BM25's (Karpukhin et al. 2020, 3.2)
            "backbone_dropout": True,  # dropout 0.1, the whole model in train mode
        }
    ),
    source="Tam et al. 2022, appendix B.1",
)

#: ``{preset name: {method: preset}}``
TRAIN_PRESETS: Mapping[str, Mapping[str, TrainPreset]] = MappingProxyType(
    {"paper": {"pt2-dpr": PT2_DPR_PAPER}}
)


def train_preset(name: str, method: str) -> TrainPreset:
    """The preset ``name`` for ``method``; :class:`ConfigError` when there is none."""
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    by_method = TRAIN_PRESETS[name]
    if method not in by_method:
        raise ConfigError(
            f"preset {name!r} is defined for {', '.join(by_method)} only, not {method} "
            f"({next(iter(by_method.values())).source})"
        )
    return by_method[method]


__all__ = ["PT2_DPR_PAPER", "TRAIN_PRESETS", "TrainPreset", "train_preset"]
