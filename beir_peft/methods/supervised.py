"""Supervised dual-encoder training on (query, relevant passage) pairs: one loop for every method.

Tam et al. 2022 (seed 000), section 5 and appendix B.1 train DPR, PT2-DPR and the comparison
variants with one recipe: DPR's in-batch negative loss (optionally with a hard negative),
AdamW with a linear schedule after 5% warm-up. :func:`train` does that for any
:class:`~beir_peft.models.tuned.TunedRetriever` (``pt2-dpr``, ``prompt``, ``bitfit``, ``lora``,
``ft``) through ``accelerate`` in one process (tested on the CPU; a GPU when one is visible). Multi-process
training is not supported yet: in-batch negatives would not be gathered across processes. With:

* batches without duplicate queries or passages (sentence-transformers' ``NoDuplicatesBatchSampler``:
  a duplicate would be an in-batch *false* negative);
* optional hard negatives mined once by the starting retriever (the backbone), cached in the run;
* a checkpoint every ``checkpoint_every`` steps; ``resume=True`` continues from the newest one on
  the same batch order (each epoch's order is a function of the seed and the epoch);
* a final retriever folder (``beir_peft.load``-able) with the training record in its config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..artifacts import CONFIG_NAME, is_retriever_folder, save_retriever
from ..data import BeirDataset, passage_text
from ..errors import ConfigError, DatasetError
from ..io import write_json_atomic
from ..losses import ColBERTPairwiseLoss, DualEncoderMNRLoss
from ..models.colbert import PT2ColBERT
from ..models.tuned import TunedRetriever
from ..training.checkpoints import (
    CHECKPOINTS,
    finished_run,
    resume_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

logger = logging.getLogger(__name__)

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
    # DDR's REM (seed 004, section 4): 2e-5, the paper's rate for BERT-base
    "ddr": 2e-5,
    "ft": 2e-5,
}
NEGATIVES_FILE = "hard_negatives.json"
#: the row field :func:`fit` passes to the loss as labels instead of encoding it
LABEL = "label"
#: who mines hard negatives: the starting backbone (dense, exact search) or BM25
NEGATIVE_MINERS = ("backbone", "bm25")


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
        hard_negatives: mined negatives per query (0: in-batch negatives only).
        negative_depth: hard negatives are drawn from the miner's top ``negative_depth``.
        negative_miner: who mines them: ``"backbone"`` (the backbone as a plain sentence-transformers
            retriever, whatever the method trained; default) or ``"bm25"`` (:class:`BM25Search`,
            DPR's BM25 negatives, Karpukhin et al. 2020 section 3.2).
        in_batch_negatives: late interaction only: also score the batch's other passages.
            ``None``: ColBERT's pairwise loss when hard negatives are given, in-batch otherwise.
            Dual encoders always use in-batch negatives.
        backbone_dropout: keep the backbone's own dropout on while training (the paper's setting:
            the whole model in train mode). ``False`` puts the backbone in eval mode, so only the
            trained parts (prefix dropout) drop; on CPU this lets attention take PyTorch's fused
            kernel, about 3x faster per step for prompt methods (docs/results.md).
        max_steps: stop after this many optimizer steps (``None``: ``epochs`` full passes).
        checkpoint_every: steps between checkpoints (0: none but the final folder).
        keep_checkpoints: how many checkpoints to keep.
        seed: seeds the batch order, dropout and the negatives.
        preset: the name of the preset the settings came from (recorded only; see :meth:`from_preset`).
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float | None = None
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 2.0
    scale: float = 20.0
    hard_negatives: int = 0
    negative_depth: int = 30
    negative_miner: str = "backbone"
    in_batch_negatives: bool | None = None
    backbone_dropout: bool = True
    max_steps: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 42
    preset: str | None = None

    @classmethod
    def from_preset(cls, name: str, method: str = "pt2-dpr", **overrides: Any) -> TrainingConfig:
        """The training settings of preset ``name`` for ``method``, ``overrides`` replacing any of them.

        ``TrainingConfig.from_preset("paper")`` is Tam et al. 2022's appendix B.1 setting for
        PT2-DPR (:data:`~beir_peft.methods.train_presets.PT2_DPR_PAPER`; its model options are
        ``train_preset("paper", "pt2-dpr").model``).
        """
        from .train_presets import train_preset

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
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.scale > 0, "scale must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def learning_rate_for(self, method: str) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[method]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------- data
def mine_hard_negatives(
    retriever: Any,
    dataset: BeirDataset,
    depth: int = 30,
    batch_size: int = 128,
    show_progress_bar: bool = True,
) -> dict[str, list[str]]:
    """``{query_id: [doc_id, ...]}``: the retriever's top ``depth`` passages that are not judged relevant.

    ``retriever`` is a dense model (searched exactly over the whole corpus) or a BEIR search class
    such as :class:`beir_peft.search.bm25.BM25Search`; only the training queries are searched.
    """
    from ..search import make_search

    judged = {qid for qid, _ in dataset.train_pairs()}
    queries = {qid: dataset.queries[qid] for qid in judged}
    search = make_search(retriever, "exact", batch_size=batch_size, show_progress_bar=show_progress_bar)
    score_function = getattr(retriever, "score_function", "dot")
    # deep enough that every query keeps `depth` candidates after its relevant passages are removed
    # (TREC-style qrels can judge dozens of passages relevant to one query)
    most_relevant = max(
        (sum(score > 0 for score in dataset.qrels.get(qid, {}).values()) for qid in queries), default=0
    )
    top_k = min(len(dataset.corpus), depth + most_relevant + 10)
    run = search.search(dataset.corpus, queries, top_k=top_k, score_function=score_function)
    negatives = {}
    for qid, hits in run.items():
        relevant = {doc for doc, score in dataset.qrels.get(qid, {}).items() if score > 0}
        ranked = sorted(hits.items(), key=lambda item: -item[1])
        negatives[qid] = [doc for doc, _ in ranked if doc not in relevant and doc != qid][:depth]
    return negatives


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


def _batches(rows: list[dict[str, Any]], batch_size: int, seed: int, no_duplicates: bool = True):
    """Batches of ``rows``: sentence-transformers' no-duplicates sampler (its order set per epoch),
    or, with ``no_duplicates=False``, the rows in their given order (GPL's pre-shuffled rows).

    Only the text columns decide what counts as a duplicate (not a ``label``).
    """
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    data = Dataset.from_list(rows)
    drop_last = len(rows) >= 2 * batch_size
    if not no_duplicates:
        return data, torch.utils.data.BatchSampler(
            torch.utils.data.SequentialSampler(data), batch_size=batch_size, drop_last=drop_last
        )
    sampler = NoDuplicatesBatchSampler(
        data,
        batch_size=batch_size,
        drop_last=drop_last,
        valid_label_columns=[LABEL],
        generator=torch.Generator(),
        seed=seed,
    )
    return data, sampler


# ---------------------------------------------------------------------------------------- loop
def train(
    retriever: TunedRetriever | PT2ColBERT,
    dataset: BeirDataset,
    output_dir: str | Path,
    config: TrainingConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train ``retriever`` on ``dataset``'s (query, relevant passage) pairs; returns the saved folder.

    Args:
        retriever: the model to train, in its starting state (its trainable parameters get updated).
        dataset: a loaded split with qrels (e.g. ``load_dataset("scifact", split="train")``).
        output_dir: the run folder: the final retriever, ``checkpoints/``, ``hard_negatives.json``.
        config: hyper-parameters (defaults: :class:`TrainingConfig`).
        resume: continue from the newest checkpoint in ``output_dir`` (a finished run returns at once;
            either is refused when made with other settings, data or method).
        overwrite: start afresh even if ``output_dir`` holds a finished retriever or checkpoints.
        on_step: called with ``(step, loss)`` after every optimizer step.
    """
    from accelerate import Accelerator

    config = config or TrainingConfig()
    output = Path(output_dir)
    check_output_folder(output, resume, overwrite)
    if overwrite:
        clear_run(output, NEGATIVES_FILE)
    run = {"dataset": dataset.name, "split": dataset.split}
    # before mining negatives: a finished run has nothing left to do (one row per training pair)
    if resume and _finished(output, retriever, run, len(dataset.train_pairs()), config):
        return output
    accelerator = Accelerator()
    retriever.to(accelerator.device)
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


def fit(
    retriever: TunedRetriever | PT2ColBERT,
    rows: list[dict[str, Any]],
    output_dir: str | Path,
    config: TrainingConfig,
    run: dict[str, Any],
    *,
    make_loss: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    no_duplicates: bool = True,
    texts_of: Mapping[str, Callable[[Any], str]] | None = None,
    accelerator: Any = None,
    resume: bool = False,
    show_progress_bar: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """The training loop every method shares: batches of ``rows`` -> loss -> AdamW, checkpoints, final folder.

    ``rows`` are dicts of texts, column ``query`` first (query side), then passage columns; a
    ``label`` column, when present, is not encoded but passed to the loss as a float tensor (e.g.
    GPL's margins). ``make_loss(module)`` builds the loss (default: DPR's in-batch loss, or
    ColBERT's pairwise loss for late interaction). ``no_duplicates`` keeps a batch free of repeated
    texts (needed by in-batch negatives); without it batches follow the rows' order. ``texts_of``
    maps a column to a function turning its row values (e.g. ids) into texts at batch time, so
    millions of rows need not hold their texts. ``run`` names the data (``dataset``, ``split``)
    in the training record and in what a resumed run must match. ``output_dir`` must already have
    been checked (:func:`check_output_folder`).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    if not rows:
        raise DatasetError(f"{run.get('dataset')}: no training rows")
    output = Path(output_dir)
    accelerator = accelerator or Accelerator()
    set_seed(config.seed)
    retriever.to(accelerator.device)
    learning_rate = config.learning_rate_for(retriever.method)
    identity = _run_identity({**run, "pairs": len(rows), **config.to_dict(), "learning_rate": learning_rate})
    if resume and _finished(output, retriever, run, len(rows), config):
        return output
    checkpoint = resume_checkpoint(output, identity, _run_identity) if resume else None

    columns = [c for c in rows[0] if c != LABEL]
    convert = {c: (texts_of or {}).get(c, _same) for c in columns}
    has_labels = LABEL in rows[0]
    data, sampler = _batches(rows, config.batch_size, config.seed, no_duplicates)
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=lambda batch: (
            [[convert[c](row[c]) for row in batch] for c in columns],
            torch.tensor([float(row[LABEL]) for row in batch]) if has_labels else None,
        ),
        # its own generator: starting an epoch must not draw from the global RNG (dropout), or a
        # resumed run would see different dropout masks than an uninterrupted one
        generator=torch.Generator().manual_seed(config.seed),
    )

    parameters = retriever.trainable_parameters()
    if not parameters:
        raise ConfigError(f"{retriever.method}: the retriever has no trainable parameters")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=config.weight_decay)
    # Each process takes every num_processes-th batch; accelerate's scheduler wrapper then steps
    # num_processes times per optimizer step, so the schedule is laid out over all processes' steps.
    processes = accelerator.num_processes
    steps_per_epoch = math.ceil(len(sampler) / processes)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps) * processes, total_steps * processes
    )
    module, optimizer, loader, scheduler = accelerator.prepare(retriever.module, optimizer, loader, scheduler)
    loss_fn = make_loss(module) if make_loss is not None else _loss(retriever, module, config)

    # carried: seconds the interrupted run had spent in the epoch it resumes (epoch_seconds covers both)
    step, epoch, done_in_epoch, epoch_times, carried = 0, 0, 0, [], 0.0
    if checkpoint is not None:
        retriever.load_trainable_state_dict(checkpoint.trainable, where=str(checkpoint.path))
        optimizer.load_state_dict(checkpoint.optimizer_state["optimizer"])
        scheduler.load_state_dict(checkpoint.optimizer_state["scheduler"])
        set_rng_state(checkpoint.optimizer_state.get("rng", {}))
        step, epoch = checkpoint.step, int(checkpoint.state["epoch"])
        done_in_epoch, epoch_times = (
            int(checkpoint.state["batches_done"]),
            list(checkpoint.state["epoch_seconds"]),
        )
        carried = float(checkpoint.state.get("epoch_elapsed", 0.0))
        logger.info("Resuming %s at step %d (epoch %d, batch %d)", output, step, epoch + 1, done_in_epoch)

    record = {
        **run,
        "pairs": len(rows),
        **config.to_dict(),
        "learning_rate": learning_rate,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "processes": accelerator.num_processes,
    }
    progress = tqdm(
        total=total_steps,
        initial=step,
        desc=f"train {retriever.method}",
        disable=not show_progress_bar or not accelerator.is_main_process,
    )

    def checkpoint_now(epoch_index: int, batches_done: int, elapsed: float) -> None:
        _checkpoint(accelerator, output, retriever, optimizer, scheduler, step, epoch_index, batches_done,
                    epoch_times, elapsed, record, config)  # fmt: skip

    module.train()
    if not config.backbone_dropout:
        unwrapped = accelerator.unwrap_model(module)
        for name in ("backbone", "passage_backbone"):
            if hasattr(unwrapped, name):
                getattr(unwrapped, name).eval()
    while step < total_steps and epoch < config.epochs:
        started, carried = time.perf_counter() - carried, 0.0
        batches = accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
        # accelerate's loader re-sets its sampler's epoch from its own counter, which restarts at 0
        # in a resumed process: set it, so the batch order is a function of (seed, epoch) only.
        batches.set_epoch(epoch)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # the skipping loader wraps the sampler and does not pass the epoch on
        for texts, labels in batches:
            features = [_tokenize(retriever, column, index) for index, column in enumerate(texts)]
            loss = loss_fn(features, labels) if labels is not None else loss_fn(features)
            accelerator.backward(loss)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, done_in_epoch = step + 1, done_in_epoch + 1
            value = float(loss.detach())
            progress.update(1)
            progress.set_postfix(loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if on_step is not None:
                on_step(step, value)
            epoch_done = done_in_epoch >= steps_per_epoch
            if (
                config.checkpoint_every
                and step % config.checkpoint_every == 0
                and step < total_steps
                and not epoch_done
            ):
                checkpoint_now(epoch, done_in_epoch, time.perf_counter() - started)
            if step >= total_steps:
                break
        epoch_times.append(time.perf_counter() - started)
        epoch, done_in_epoch = epoch + 1, 0
        if step < total_steps and config.checkpoint_every:
            checkpoint_now(epoch, 0, 0.0)
    progress.close()
    module.eval()

    record.update(steps=step, epoch_seconds=[round(t, 2) for t in epoch_times])
    if accelerator.is_main_process:
        save_retriever(retriever, output, training=record)
        # The finished folder supersedes its checkpoints (for `ft` each holds a whole backbone).
        shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    return output


def _same(value: Any) -> Any:
    return value


def _is_late_interaction(retriever) -> bool:
    return getattr(retriever, "score_function", None) == "maxsim"


def _loss(retriever, module, config: TrainingConfig):
    """DPR's in-batch NLL for dual encoders; ColBERT's pairwise (or in-batch) MaxSim cross-entropy."""
    if not _is_late_interaction(retriever):
        return DualEncoderMNRLoss(module, scale=config.scale)
    in_batch = (
        config.in_batch_negatives if config.in_batch_negatives is not None else config.hard_negatives == 0
    )
    if not in_batch and config.hard_negatives == 0:
        raise ConfigError(
            "pairwise ColBERT training needs hard negatives (--hard-negatives 1) or in-batch negatives"
        )
    return ColBERTPairwiseLoss(module, in_batch_negatives=in_batch, scale=1.0)


def _tokenize(retriever, texts: list[str], column: int) -> dict[str, torch.Tensor]:
    """Column 0 holds queries, the others passages (ColBERT tokenises the two differently)."""
    if _is_late_interaction(retriever):
        return retriever.tokenize_queries(texts) if column == 0 else retriever.tokenize_docs(texts)
    return retriever.tokenize(texts)


def _checkpoint(
    accelerator,
    output,
    retriever,
    optimizer,
    scheduler,
    step,
    epoch,
    batches_done,
    epoch_times,
    epoch_elapsed,
    record,
    config,
):
    if not accelerator.is_main_process:
        return
    save_checkpoint(
        output,
        step,
        retriever.trainable_state_dict(),
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
        {
            "epoch": epoch,
            "batches_done": batches_done,
            "epoch_seconds": epoch_times,
            "epoch_elapsed": epoch_elapsed,
            "run": _run_identity(record),
        },
        keep=config.keep_checkpoints,
    )


def _run_identity(record: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed run must share with the interrupted one."""
    keys = (
        "dataset",
        "split",
        "pairs",
        "batch_size",
        "learning_rate",
        "epochs",
        "max_steps",
        "hard_negatives",
        "negative_miner",
        "seed",
        "scale",
    )
    identity = {k: record.get(k) for k in keys}
    identity["negative_miner"] = (
        identity["negative_miner"] or "backbone"
    )  # checkpoints from before the option
    return identity


def _finished(output: Path, retriever, run: dict[str, Any], pairs: int, config: TrainingConfig) -> bool:
    """Whether ``output`` holds this run finished: the same settings check as an interrupted run
    (:func:`_run_identity`) plus the method, against the folder's training record."""
    learning_rate = config.learning_rate_for(retriever.method)
    identity = _run_identity({**run, "pairs": pairs, **config.to_dict(), "learning_rate": learning_rate})
    wanted = {"method": retriever.method, **identity}
    if not finished_run(output, wanted, _trained_settings):
        return False
    logger.info("%s already holds the finished retriever; nothing to resume", output)
    return True


def _trained_settings(saved_config: dict[str, Any]) -> dict[str, Any]:
    """What a saved folder's ``config.json`` says its retriever was trained with."""
    return {"method": saved_config.get("method"), **_run_identity(saved_config.get("training") or {})}


def check_output_folder(output: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work, a run folder that already holds a run when neither flag allows it."""
    from ..training.checkpoints import checkpoint_dirs

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    if resume or overwrite or not output.is_dir():
        return
    if is_retriever_folder(output) or checkpoint_dirs(output):
        raise ConfigError(
            f"{output}: already holds a training run; pass --resume to continue it or --overwrite to start again"
        )


def clear_run(output: Path, *files: str) -> None:
    """Remove a run's checkpoints, its final config and ``files`` (``--overwrite``: start afresh)."""
    if not output.is_dir():
        return
    shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    for name in (CONFIG_NAME, *files):
        (output / name).unlink(missing_ok=True)


def _negatives(
    retriever, dataset, config, output, accelerator, show_progress_bar
) -> dict[str, list[str]] | None:
    """Hard negatives mined by the backbone or BM25 (``config.negative_miner``), cached in
    ``output/hard_negatives.json``.

    The backbone is loaded afresh as a plain sentence-transformers retriever, so the negatives are
    the same whichever method is trained (and whatever state ``retriever`` starts in).
    """
    if not config.hard_negatives:
        return None
    path = output / NEGATIVES_FILE
    wanted = {"split": dataset.split, "depth": config.negative_depth, "miner": config.negative_miner}
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if {key: cached.get(key, "backbone" if key == "miner" else None) for key in wanted} == wanted:
            return cached["negatives"]
    if accelerator.is_main_process:
        if config.negative_miner == "bm25":
            from ..search.bm25 import BM25Search

            miner = BM25Search(show_progress_bar=show_progress_bar)
        else:
            from ..models.loading import load_model

            miner = load_model(retriever.config.backbone, device=str(accelerator.device))
        logger.info(
            "Mining %d hard negatives per query with %s", config.negative_depth, config.negative_miner
        )
        negatives = mine_hard_negatives(
            miner, dataset, depth=config.negative_depth, show_progress_bar=show_progress_bar
        )
        write_json_atomic(path, {**wanted, "negatives": negatives})
    accelerator.wait_for_everyone()
    return json.loads(path.read_text(encoding="utf-8"))["negatives"]


__all__ = [
    "DEFAULT_LEARNING_RATES",
    "NEGATIVE_MINERS",
    "TrainingConfig",
    "check_output_folder",
    "clear_run",
    "fit",
    "mine_hard_negatives",
    "train",
    "training_rows",
]
