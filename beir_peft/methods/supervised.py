"""The supervised method: a retriever trained on a split's (query, relevant passage) pairs.

Tam et al. 2022 (seed 000), section 5 and appendix B.1 train DPR, PT2-DPR and the comparison
variants with one recipe: DPR's in-batch negative loss (optionally with a hard negative),
AdamW with a linear schedule after 5% warm-up. :func:`train` does that for any
:class:`~beir_peft.models.tuned.TunedRetriever` (``pt2-dpr``, ``prompt``, ``bitfit``, ``lora``,
``adapter``, ``ft``) and :class:`~beir_peft.models.colbert.PT2ColBERT`: it turns the qrels into rows, with
optional hard negatives mined once by the starting retriever (the backbone) or BM25 and cached in
the run folder (:data:`HARD_NEGATIVES_FILE`), and trains them with the engine's
:func:`~beir_peft.training.pairs.fit` (batches without duplicates, checkpoints, exact resume, the
final ``beir_peft.load``-able folder with its training record).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import BeirDataset, passage_text
from ..errors import DatasetError
from ..io import write_json_atomic
from ..models.colbert import PT2ColBERT
from ..models.tuned import TunedRetriever
from ..training.config import TrainingConfig
from ..training.pairs import finished_pair_run, fit, pair_run_folder
from ..training.processes import new_accelerator
from .corpus_pairs import corpus_rows
from .hard_negatives import mine_hard_negatives, unified_negatives

logger = logging.getLogger(__name__)

#: the run folder's cache of the hard negatives mined for :func:`train` (not GPL's stage file)
HARD_NEGATIVES_FILE = "hard_negatives.json"


# ---------------------------------------------------------------------------------------- data
def training_rows(
    dataset: BeirDataset, negatives: dict[str, list[str]] | None, count: int, seed: int
) -> list[dict[str, str]]:
    """One row per (query, relevant passage): ``query``, ``positive`` and ``negative_1..count`` texts."""
    pairs = dataset.train_pairs()
    if not pairs:
        raise DatasetError(f"{dataset.name}/{dataset.split}: no (query, relevant passage) pairs to train on")
    rng = random.Random(seed)
    rows = []
    for qid, doc_id in pairs:
        row = {"query": dataset.queries[qid], "positive": passage_text(dataset.corpus[doc_id])}
        if count:
            pool = (negatives or {}).get(qid, [])
            if len(pool) < count:
                raise DatasetError(f"query {qid}: only {len(pool)} hard negatives mined, {count} asked for")
            for i, doc in enumerate(rng.sample(pool, count), start=1):
                row[f"negative_{i}"] = passage_text(dataset.corpus[doc])
        rows.append(row)
    return rows


def train(
    retriever: TunedRetriever | PT2ColBERT,
    dataset: BeirDataset,
    output_dir: str | Path,
    config: TrainingConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    init_from: dict[str, str] | None = None,
) -> Path:
    """Train ``retriever`` on ``dataset``'s (query, relevant passage) pairs; returns the saved folder.

    With ``config.pair_source`` ``"title"`` or ``"ict"`` the pairs are cut from the corpus instead,
    without labels (:mod:`~beir_peft.methods.corpus_pairs`: DPTDR's intermediate pre-training).

    Args:
        retriever: the model to train, in its starting state (its trainable parameters get updated).
        dataset: a loaded split with qrels (e.g. ``load_dataset("scifact", split="train")``).
        output_dir: the run folder: the final retriever, ``checkpoints/``, :data:`HARD_NEGATIVES_FILE`.
        config: hyper-parameters (defaults: :class:`TrainingConfig`).
        resume: continue from the newest checkpoint in ``output_dir`` (a finished run returns at once;
            either is refused when made with other settings, data or method).
        overwrite: start afresh even if ``output_dir`` holds a finished retriever or checkpoints.
        on_step: called with ``(step, loss)`` after every optimizer step.
        init_from: where ``retriever``'s starting state came from (``{"path", "fingerprint"}`` of a
            saved folder, as ``train --init-from`` loads it), for the training record; a resumed run
            must start from the same one.
    """
    config = config or TrainingConfig()
    folder = pair_run_folder(output_dir)
    folder.check(resume, overwrite)
    accelerator = new_accelerator(mixed_precision=config.mixed_precision)
    if overwrite and accelerator.is_main_process:
        folder.clear(HARD_NEGATIVES_FILE)
    accelerator.wait_for_everyone()
    output = folder.output
    run = {"dataset": dataset.name, "split": dataset.split, "init_from": init_from}
    corpus_pairs = (
        corpus_rows(dataset, config.pair_source, config.seed) if config.pair_source != "qrels" else None
    )
    # before mining negatives: a finished run has nothing left to do (one row per training pair)
    pairs = len(dataset.train_pairs()) if corpus_pairs is None else len(corpus_pairs)
    if resume and finished_pair_run(output, retriever, run, pairs, config, accelerator.num_processes):
        return output
    retriever.to(accelerator.device)
    if corpus_pairs is not None:
        rows = corpus_pairs
    else:
        negatives = _negatives(retriever, dataset, config, output, accelerator, show_progress_bar)
        rows = training_rows(dataset, negatives, config.hard_negatives, config.seed)
    return fit(
        retriever,
        rows,
        output,
        config,
        run,
        accelerator=accelerator,
        resume=resume,
        show_progress_bar=show_progress_bar,
        on_step=on_step,
    )


def _negatives(
    retriever, dataset, config, output, accelerator, show_progress_bar
) -> dict[str, list[str]] | None:
    """Hard negatives mined as ``config.negative_miner`` says, cached in :data:`HARD_NEGATIVES_FILE`
    of ``output``.

    The dense miner is the backbone loaded afresh as a plain sentence-transformers retriever (so the
    negatives are the same whichever method is trained, whatever state ``retriever`` starts in), or
    ``config.negatives_from`` (e.g. the first round's trained folder); ``"unified"`` combines it with
    BM25 and guards false negatives (:func:`~beir_peft.methods.hard_negatives.unified_negatives`).
    """
    if not config.hard_negatives:
        return None
    path = output / HARD_NEGATIVES_FILE
    wanted = {"split": dataset.split, "depth": config.negative_depth, "miner": config.negative_miner,
              "negatives_from": config.negatives_from, "false_negative_margin": config.false_negative_margin}  # fmt: skip
    # the main process alone decides, mines and writes; the others read what it wrote
    if accelerator.is_main_process and not _cached(path, wanted):
        logger.info(
            "Mining %d hard negatives per query with %s", config.negative_depth, config.negative_miner
        )
        depth, progress = config.negative_depth, show_progress_bar
        if config.negative_miner == "bm25":
            from ..search.bm25 import BM25Search

            negatives = mine_hard_negatives(BM25Search(show_progress_bar=progress), dataset, depth=depth,
                                            show_progress_bar=progress)  # fmt: skip
        else:
            from ..models.loading import load_model

            dense = load_model(
                config.negatives_from or retriever.config.backbone, device=str(accelerator.device)
            )
            if config.negative_miner == "unified":
                negatives = unified_negatives(dense, dataset, depth=depth, margin=config.false_negative_margin,
                                              show_progress_bar=progress)  # fmt: skip
            else:
                negatives = mine_hard_negatives(dense, dataset, depth=depth, show_progress_bar=progress)
        write_json_atomic(path, {**wanted, "negatives": negatives})
    accelerator.wait_for_everyone()
    return json.loads(path.read_text(encoding="utf-8"))["negatives"]


def _cached(path: Path, wanted: dict[str, Any]) -> bool:
    """Whether ``path`` holds negatives mined with the ``wanted`` split, depth and miner."""
    if not path.is_file():
        return False
    cached = json.loads(path.read_text(encoding="utf-8"))
    before_options = {"miner": "backbone", "false_negative_margin": 0.0}  # files written before they existed
    return {key: cached.get(key, before_options.get(key)) for key in wanted} == wanted


__all__ = ["HARD_NEGATIVES_FILE", "TrainingConfig", "mine_hard_negatives", "train", "training_rows"]
