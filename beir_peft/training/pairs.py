"""Training a retriever on rows of texts (a query and its passages, optionally a label): :func:`fit`.

What supervised training on qrels (:func:`beir_peft.methods.supervised.train`), GPL's MarginMSE
stage and DDR's REM share: batches of rows (sentence-transformers' ``NoDuplicatesBatchSampler``
keeps a batch free of duplicates, which would be in-batch *false* negatives), the loss (DPR's
in-batch negative loss for dual encoders, ColBERT's pairwise or in-batch loss for late interaction,
or the method's own), run through :func:`~beir_peft.training.loop.run_loop`, and a final retriever
folder (``beir_peft.load``-able) with the training record in its config.

On ``N`` processes (``torchrun``, ``accelerate launch``) ``batch_size`` is per process: the sampler
draws batches of ``N * batch_size`` rows, each process trains on its slice of every batch, and
DPR's in-batch loss gathers the passages of all processes (with gradient), so ``N`` processes with
batch ``B`` train on the batches, in-batch negatives and loss of one process with batch ``N * B``
(ColBERT's pairwise loss needs no gathering; its in-batch variant is refused on several).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..artifacts import read_config, save_retriever
from ..encoders.backbone import checkpoint_in_eval_mode, enable_gradient_checkpointing
from ..errors import ConfigError, DatasetError
from ..losses import ColBERTPairwiseLoss, DualEncoderMNRLoss
from ..models.colbert import PT2ColBERT
from ..models.tuned import TunedRetriever
from ..registry import LATE_INTERACTION, retriever_kind
from .config import TrainingConfig
from .loop import LoaderBatches, LoopResult, LoopSettings, TrainingStep, run_loop
from .processes import new_accelerator
from .run_folder import RunFolder

#: the row field :func:`fit` passes to the loss as labels instead of encoding it
LABEL = "label"


def pair_run_folder(output: str | Path) -> RunFolder:
    """The run folder of :func:`fit`: checkpoints inside, finished when its retriever was trained
    with the same method, data and settings (:func:`run_identity`)."""
    return RunFolder(Path(output), trained_with=_trained_settings)


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
    """Train ``retriever`` on ``rows``: batches -> loss -> the training loop -> the final folder.

    ``rows`` are dicts of texts, column ``query`` first (query side), then passage columns; a
    ``label`` column, when present, is not encoded but passed to the loss as a float tensor (e.g.
    GPL's margins). ``make_loss(module)`` builds the loss (default: DPR's in-batch loss, or
    ColBERT's pairwise loss for late interaction). ``no_duplicates`` keeps a batch free of repeated
    texts (needed by in-batch negatives); without it batches follow the rows' order. ``texts_of``
    maps a column to a function turning its row values (e.g. ids) into texts at batch time, so
    millions of rows need not hold their texts. ``run`` names the data (``dataset``, ``split``)
    in the training record and in what a resumed run must match. ``output_dir`` must already have
    been checked (:meth:`RunFolder.check`). ``on_step`` is called with ``(step, loss)`` after every
    optimizer step.
    """
    from accelerate.utils import set_seed

    if not rows:
        raise DatasetError(f"{run.get('dataset')}: no training rows")
    folder = pair_run_folder(output_dir)
    accelerator = accelerator or new_accelerator(mixed_precision=config.mixed_precision)
    set_seed(config.seed, device_specific=True)  # each process its own dropout; process 0: the seed
    retriever.to(accelerator.device)
    learning_rate = config.learning_rate_for(retriever.method)
    world_size = accelerator.num_processes
    record = {**run, "pairs": len(rows), **config.to_dict(), "learning_rate": learning_rate,
              "backbone_dropout": config.backbone_dropout_for(retriever.method), "world_size": world_size}  # fmt: skip
    identity = run_identity(record)
    if resume and folder.finished({"method": retriever.method, **identity}):
        return folder.output
    parameters = retriever.trainable_parameters()
    if not parameters:
        raise ConfigError(f"{retriever.method}: the retriever has no trainable parameters")

    columns = [c for c in rows[0] if c != LABEL]
    convert = {c: (texts_of or {}).get(c, _same) for c in columns}
    has_labels = LABEL in rows[0]
    data, sampler = _batches(rows, config.batch_size * world_size, config.seed, no_duplicates)
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
    batches = LoaderBatches(accelerator, loader, sampler)
    settings = LoopSettings(
        learning_rate=learning_rate,
        epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        checkpoint_epochs=True,
    )
    step = _PairStep(retriever, config, record, folder.output, make_loss, on_step)
    run_loop(step, batches, settings, folder, module=retriever.module, parameters=parameters, identity=identity,
             normalize_identity=run_identity, accelerator=accelerator, resume=resume,
             desc=f"train {retriever.method}", show_progress_bar=show_progress_bar)  # fmt: skip
    return folder.output


class _PairStep(TrainingStep):
    """Tokenise a batch's columns (queries, then passages) and apply the loss."""

    def __init__(self, retriever, config: TrainingConfig, record, output: Path, make_loss, on_step):
        self.retriever, self.config, self.record, self.output = retriever, config, record, output
        self.make_loss, self.on_step = make_loss, on_step

    def bind(self, module):
        set_backbone_training_modes(self.retriever, self.config)
        self.loss_fn = (
            self.make_loss(module)
            if self.make_loss is not None
            else pair_loss(self.retriever, module, self.config)
        )

    def loss(self, batch, step):
        texts, labels = batch
        features = [tokenize_column(self.retriever, column, index) for index, column in enumerate(texts)]
        return self.loss_fn(features, labels) if labels is not None else self.loss_fn(features)

    def after_step(self, step, loss):
        if self.on_step is not None:
            self.on_step(step, loss)

    def trainable_state(self):
        return self.retriever.trainable_state_dict()

    def load_trainable_state(self, state, where):
        self.retriever.load_trainable_state_dict(state, where=where)

    def save(self, result: LoopResult):
        save_retriever(self.retriever, self.output, training={
            **self.record, "steps_per_epoch": result.steps_per_epoch, "total_steps": result.total_steps,
            "processes": result.processes, "steps": result.steps, "epoch_seconds": result.epoch_seconds,
            "first_loss": result.first_loss, "last_loss": result.last_loss,
        })  # fmt: skip


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


def _same(value: Any) -> Any:
    return value


def _is_late_interaction(retriever) -> bool:
    return retriever_kind(retriever) == LATE_INTERACTION


def set_backbone_training_modes(retriever, config: TrainingConfig) -> None:
    """Apply ``config.backbone_dropout`` (off: the backbone in eval mode; ``None``: the method's
    default) and ``config.gradient_checkpointing`` to the retriever's backbone(s); the module is in
    train mode."""
    dropout = config.backbone_dropout_for(retriever.method)
    for name in ("backbone", "passage_backbone"):
        backbone = getattr(retriever.module, name, None)
        if backbone is None:
            continue
        if not dropout:
            backbone.eval()
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(backbone)
            if not dropout:
                checkpoint_in_eval_mode(backbone)


def pair_loss(retriever, module, config: TrainingConfig):
    """DPR's in-batch NLL for dual encoders (on several processes the passages of all are gathered);
    ColBERT's pairwise (or, in one process, in-batch) MaxSim cross-entropy."""
    gather = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not _is_late_interaction(retriever):
        return DualEncoderMNRLoss(module, scale=config.scale, gather_across_devices=gather)
    in_batch = (
        config.in_batch_negatives if config.in_batch_negatives is not None else config.hard_negatives == 0
    )
    if not in_batch and config.hard_negatives == 0:
        raise ConfigError(
            "pairwise ColBERT training needs hard negatives (--hard-negatives 1) or in-batch negatives"
        )
    if in_batch and gather:
        # gathering token vectors across processes did not reproduce one process's gradients (tested
        # on 2 gloo processes): refused rather than trained differently
        raise ConfigError(
            "ColBERT with in-batch negatives trains in one process only; use hard negatives (pairwise) on several"
        )
    return ColBERTPairwiseLoss(module, in_batch_negatives=in_batch, scale=1.0)


def tokenize_column(retriever, texts: list[str], column: int) -> dict[str, torch.Tensor]:
    """Column 0 holds queries, the others passages (ColBERT tokenises the two differently)."""
    if _is_late_interaction(retriever):
        return retriever.tokenize_queries(texts) if column == 0 else retriever.tokenize_docs(texts)
    return retriever.tokenize(texts)


def run_identity(record: Mapping[str, Any]) -> dict[str, Any]:
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
        "negatives_from",
        "false_negative_margin",
        "seed",
        "scale",
        "world_size",
        "pair_source",
        "init_from",
    )
    identity = {k: record.get(k) for k in keys}
    # checkpoints and folders from before the options: the backbone's negatives, one process
    identity["negative_miner"] = identity["negative_miner"] or "backbone"
    identity["world_size"] = identity["world_size"] or 1
    identity["pair_source"] = identity["pair_source"] or "qrels"  # before corpus pairs
    identity["false_negative_margin"] = identity["false_negative_margin"] or 0.0  # before unified mining
    return identity


def finished_pair_run(
    output: str | Path,
    retriever,
    run: Mapping[str, Any],
    pairs: int,
    config: TrainingConfig,
    world_size: int = 1,
) -> bool:
    """Whether ``output`` holds this run finished (on ``world_size`` processes): the same settings
    check as an interrupted run (:func:`run_identity`) plus the method, against the folder's
    training record."""
    learning_rate = config.learning_rate_for(retriever.method)
    identity = run_identity({**run, "pairs": pairs, **config.to_dict(), "learning_rate": learning_rate,
                             "world_size": world_size})  # fmt: skip
    return pair_run_folder(output).finished({"method": retriever.method, **identity})


def _trained_settings(output: Path) -> dict[str, Any]:
    """What a saved folder's ``config.json`` says its retriever was trained with."""
    saved = read_config(output)
    return {"method": saved.get("method"), **run_identity(saved.get("training") or {})}


__all__ = [
    "LABEL",
    "finished_pair_run",
    "fit",
    "pair_loss",
    "pair_run_folder",
    "run_identity",
    "set_backbone_training_modes",
    "tokenize_column",
]
