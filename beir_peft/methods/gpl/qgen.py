"""QGen: GPL's baseline, a retriever trained on generated queries with in-batch negatives only.

Ma et al. 2021 and Thakur et al. 2021 (BEIR), as the GPL paper runs it (Wang et al. 2022, seed 002,
sections 4.1 and 5): the queries GPL generates (the same generator, sampling, 250K rule and seed, so
the two methods share their queries, as the paper's comparison does), then
``MultipleNegativesRankingLoss`` on (query, source passage) pairs with cosine similarity (scale 20),
one epoch, batch 75, no hard negatives and no pseudo labels. The paper's table 1: QGen 63.8 nDCG@10
on SciFact, GPL 66.4, the zero-shot model 57.1 (their DistilBERT student).

:func:`run_qgen` runs into a resumable folder with GPL's first two stages and file names::

    DIR/qgen_config.json         the settings (a rerun with other data-shaping settings is refused)
    DIR/corpus_sample.json       0. the passages used and queries per passage (GPL's 250K rule)
    DIR/generated_queries.jsonl  1. {"_id", "text", "doc_id"} per query (or the user's --queries)
    DIR/config.json, weights.safetensors, README.md   2. the trained retriever (beir_peft.load)

To train QGen on the very queries of a GPL run, pass that run's ``generated_queries.jsonl`` as
``queries_file``; generating with the same settings and seed gives the same file anyway.

Batches: BEIR's training script shuffles the pairs (``sampler="shuffle"``, the default), so two
queries of one passage can share a batch and that passage is then a negative of its own query;
``sampler="no-duplicates"`` uses sentence-transformers' no-duplicates sampler instead.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data import passage_text
from ...errors import ConfigError, DatasetError
from ...training.processes import process_group
from .pipeline import (
    QUERIES_FILE,
    SAMPLE_FILE,
    QueryStageConfig,
    check_adapted,
    check_run_settings,
    query_stages,
    split_held_out,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "qgen_config.json"
SAMPLERS = ("shuffle", "no-duplicates")
#: settings that do not change the run's outputs (excluded from the rerun check)
OPERATIONAL = ("generation_batch_size", "shard_size", "device", "checkpoint_every")


@dataclass
class QGenConfig(QueryStageConfig):
    """QGen settings: GPL's :class:`~.pipeline.QueryStageConfig` (the same sample and generation),
    then the in-batch-negatives training of BEIR's script (the GPL paper's defaults)."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 75
    learning_rate: float | None = None  # None: 2e-5 for ft (sentence-transformers' fit), else the package's
    warmup_ratio: float = 0.1  # BEIR's script: a tenth of the steps
    weight_decay: float = 0.01  # sentence-transformers' fit default, which BEIR's script keeps
    scale: float = 20.0
    sampler: str = "shuffle"
    checkpoint_every: int = 1_000

    def __post_init__(self):
        super().__post_init__()
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")


def run_qgen(
    corpus: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    config: QGenConfig | None = None,
    *,
    queries_file: str | os.PathLike | None = None,
    dataset_name: str = "corpus",
    overwrite: bool = False,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] = logger.info,
) -> Path:
    """Run (or resume) QGen on ``corpus`` into ``output_dir``; returns the folder of the trained retriever.

    ``queries_file``: queries to train on instead of generated ones (JSONL with ``text`` and
    ``doc_id`` per line, e.g. a GPL run's ``generated_queries.jsonl``).
    """
    config = config or QGenConfig()
    output = Path(output_dir)
    group = process_group()
    _check_folder(output, config, queries_file, overwrite, group)
    echo = echo if group.is_main_process else (lambda _message: None)  # only the main process speaks
    show_progress_bar = show_progress_bar and group.is_main_process
    device = config.device or (str(group.device) if group.num_processes > 1 else None)
    _, generated = query_stages(corpus, output, config, queries_file, group, echo, device, show_progress_bar)
    training, held_out = split_held_out(generated, config)  # the same held-out queries as GPL's
    if len(training) < 2:
        raise DatasetError(f"QGen needs at least 2 training queries, got {len(training)}")
    echo(f"training: {config.student} on {config.backbone}, {len(training)} pairs, batch {config.batch_size}")
    folder = _train(training, corpus, config, output, dataset_name, show_progress_bar)
    check_adapted(folder, held_out, corpus, config, group, echo)
    return folder


def _check_folder(output: Path, config: QGenConfig, queries_file, overwrite: bool, group) -> None:
    record = {**config.to_dict(), "queries_file": str(queries_file) if queries_file else None,
              "world_size": group.num_processes}  # fmt: skip
    check_run_settings(output, CONFIG_FILE, record, OPERATIONAL, "QGen", overwrite, group,
                       files=(SAMPLE_FILE, QUERIES_FILE), folders=(f"{QUERIES_FILE}.parts",),
                       older=_trained_on_every_query)  # fmt: skip


def _trained_on_every_query(saved: dict) -> dict:
    """Folders written before the adaptation check held nothing out."""
    saved.setdefault("held_out_queries", 0)
    return saved


def _train(generated, corpus, config: QGenConfig, output: Path, dataset_name: str, show: bool) -> Path:
    from ...models.tuned import build_retriever
    from ...training.config import TrainingConfig
    from ...training.pairs import fit

    # cosine, as BEIR's script trains (MNRL's default similarity): unit vectors, scored by cosine
    retriever = build_retriever(
        config.student, config.backbone, max_seq_length=config.max_seq_length, normalize=True,
        score_function="cos_sim",
    )  # fmt: skip
    learning_rate = config.learning_rate
    if learning_rate is None and config.student == "ft":
        learning_rate = 2e-5
    train_config = TrainingConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=learning_rate,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=1.0,  # sentence-transformers' fit default
        backbone_dropout=True,  # the whole student in train mode, as sentence-transformers' fit trains it
        scale=config.scale,
        max_steps=config.max_steps,
        checkpoint_every=config.checkpoint_every,
        seed=config.seed,
    )
    rows = [{"query": row["_id"], "positive": row["doc_id"]} for row in generated]
    if config.sampler == "shuffle":  # BEIR's DataLoader(shuffle=True), one seeded order
        random.Random(config.seed).shuffle(rows)
    queries = {row["_id"]: row["text"] for row in generated}
    texts = {"query": queries.__getitem__, "positive": lambda doc_id: passage_text(corpus[doc_id])}
    return fit(
        retriever,
        rows,
        output,
        train_config,
        {
            "dataset": dataset_name,
            "split": "qgen",
            "method": "qgen",
            "qgen": {k: v for k, v in config.to_dict().items() if k not in OPERATIONAL},
        },
        no_duplicates=config.sampler == "no-duplicates",
        texts_of=texts,
        resume=True,
        show_progress_bar=show,
    )


__all__ = ["CONFIG_FILE", "QGenConfig", "SAMPLERS", "run_qgen"]
