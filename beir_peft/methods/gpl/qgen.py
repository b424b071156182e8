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

import dataclasses
import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data import passage_text
from ...encoders.backbone import DEFAULT_BACKBONE
from ...errors import ConfigError, DatasetError
from ...io import write_json_atomic
from ...registry import student_methods
from ...training.processes import process_group
from .pipeline import (
    PRESETS,
    QUERIES_FILE,
    SAMPLE_FILE,
    _generate,
    _read_jsonl,
    _read_user_queries,
    _sample,
    _silent,
    _stage,
    _write_jsonl,
)
from .query_generation import DEFAULT_GENERATOR

logger = logging.getLogger(__name__)

CONFIG_FILE = "qgen_config.json"
SAMPLERS = ("shuffle", "no-duplicates")
#: settings that do not change the run's outputs (excluded from the rerun check)
OPERATIONAL = ("generation_batch_size", "shard_size", "device", "checkpoint_every")


@dataclass
class QGenConfig:
    """QGen settings; the generation fields mean what :class:`~.pipeline.GPLConfig`'s do (``None``
    sizing fields take the ``preset``'s query budget, default ``"paper"``: 250K queries)."""

    preset: str = "paper"
    student: str = "ft"
    backbone: str = DEFAULT_BACKBONE
    generator: str = DEFAULT_GENERATOR
    total_queries: int | None = None
    queries_per_passage: int | None = None
    num_passages: int | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 75
    learning_rate: float | None = None  # None: 2e-5 for ft (sentence-transformers' fit), else the package's
    warmup_ratio: float = 0.1  # BEIR's script: a tenth of the steps
    weight_decay: float = 0.01  # sentence-transformers' fit default, which BEIR's script keeps
    scale: float = 20.0
    sampler: str = "shuffle"
    max_seq_length: int = 350
    top_p: float = 0.95
    top_k: int = 25
    temperature: float = 1.0
    max_query_length: int = 64
    seed: int = 42
    checkpoint_every: int = 1_000
    generation_batch_size: int = 32
    shard_size: int = 10_000
    device: str | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown QGen preset {self.preset!r}; choose {', '.join(PRESETS)}")
        if self.total_queries is None:
            self.total_queries = PRESETS[self.preset]["total_queries"]
        if self.student not in student_methods():
            raise ConfigError(f"QGen students are {', '.join(student_methods())}; got {self.student!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        for name in ("total_queries", "epochs", "shard_size", "max_seq_length"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (in-batch negatives need a second pair)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    echo = echo if group.is_main_process else _silent
    show_progress_bar = show_progress_bar and group.is_main_process
    device = config.device or (str(group.device) if group.num_processes > 1 else None)
    sample = _stage(
        group, output / SAMPLE_FILE, echo, "corpus sample", lambda: _sample(corpus, config, queries_file)
    )
    generated = _stage(
        group,
        output / QUERIES_FILE,
        echo,
        "queries",
        lambda: _generate(
            corpus, sample, config, device, group, output / f"{QUERIES_FILE}.parts", show_progress_bar
        ),
        reader=_read_jsonl,
        writer=_write_jsonl,
        parts=output / f"{QUERIES_FILE}.parts",
        given=(lambda: _read_user_queries(Path(queries_file), corpus)) if queries_file else None,
        given_note=f"the user's queries from {queries_file}",
    )
    if len(generated) < 2:
        raise DatasetError(f"QGen needs at least 2 training queries, got {len(generated)}")
    echo(
        f"training: {config.student} on {config.backbone}, {len(generated)} pairs, batch {config.batch_size}"
    )
    return _train(generated, corpus, config, output, dataset_name, show_progress_bar)


def _check_folder(output: Path, config: QGenConfig, queries_file, overwrite: bool, group) -> None:
    """Refuse a folder holding a QGen run with other settings; with ``overwrite``, clear it; record
    the settings (the main process)."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    record = {**config.to_dict(), "queries_file": str(queries_file) if queries_file else None,
              "world_size": group.num_processes}  # fmt: skip
    path = output / CONFIG_FILE
    if overwrite and output.is_dir() and group.is_main_process:
        for name in (CONFIG_FILE, SAMPLE_FILE, QUERIES_FILE):
            (output / name).unlink(missing_ok=True)
        shutil.rmtree(output / f"{QUERIES_FILE}.parts", ignore_errors=True)
        from ...training.pairs import pair_run_folder

        pair_run_folder(output).clear()
    elif path.is_file() and not overwrite:
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in record if k not in OPERATIONAL and saved.get(k) != record[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {record[k]!r}" for k in changed)
            raise ConfigError(
                f"{output} holds a QGen run with other settings ({detail}); use another folder or --overwrite"
            )
    group.wait_for_everyone()
    if group.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
    group.wait_for_everyone()


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
