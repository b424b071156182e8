"""The one training loop: AdamW with a linear warm-up and decay, on ``accelerate``, resumed exactly.

Every method gives it only its own step (a :class:`TrainingStep`: the loss of one batch, its trained
tensors, and whatever else its checkpoints must hold) and its batches (:class:`EpochBatches`). The
loop owns the rest: the optimizer and schedule, gradient clipping, the checkpoint rule, exact resume
(the trained tensors, optimizer, scheduler and RNG states, the epoch and the batches done in it, the
seconds spent), the epoch clock, the final save and the clean-up of the checkpoints.

The checkpoint rule: a checkpoint every ``checkpoint_every`` steps (none after the last step: the
final folder supersedes it); one taken at the end of an epoch records the next epoch at batch 0;
with ``checkpoint_epochs`` every epoch's end is also checkpointed. Each epoch's batch order is a
function of the seed and the epoch, so a resumed run sees the same batches, and the RNG state
(dropout, masking) is restored: resumed runs end with the same weights as uninterrupted ones.

Runs in one process or, under ``torchrun`` / ``accelerate launch``, in several (accelerate starts
the process group from the launcher's environment: NCCL on GPUs, gloo on the CPU; tested on the
CPU with 2 gloo processes). The module is wrapped in DistributedDataParallel by accelerate; the
logged loss is the mean over the processes; each process's RNG state goes into the checkpoints.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from .checkpoints import Checkpoint, rng_state, set_rng_state
from .processes import new_accelerator
from .run_folder import RunFolder

logger = logging.getLogger(__name__)

#: torch's AdamW default weight decay, which ART and DDR's DAM have always trained with
TORCH_ADAMW_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class LoopSettings:
    """How the loop steps.

    Attributes:
        learning_rate: AdamW's peak learning rate.
        epochs: passes over the batches (``None``: as many as ``max_steps`` needs).
        max_steps: stop after this many optimizer steps (``None``: ``epochs`` full passes).
        warmup_ratio: linear warm-up over this fraction of the steps, then linear decay to 0.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (0 or ``None``: none).
        checkpoint_every: steps between checkpoints (0: none).
        keep_checkpoints: how many checkpoints to keep.
        checkpoint_epochs: also checkpoint at the end of every epoch.
    """

    learning_rate: float
    epochs: int | None
    max_steps: int | None = None
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    checkpoint_epochs: bool = False

    def __post_init__(self):
        if self.epochs is None and self.max_steps is None:
            raise ConfigError("a training loop needs epochs or max_steps")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run: ``epochs`` passes, cut at ``max_steps``."""
        passes = None if self.epochs is None else self.epochs * steps_per_epoch
        return min(n for n in (passes, self.max_steps) if n is not None)


@dataclass(frozen=True)
class LoopResult:
    """What the loop did: steps taken, the schedule's length, each epoch's seconds (the last one
    possibly partial) and the loss of the first and the last step (the mean over the processes;
    ``None``: a step with nothing to learn from)."""

    steps: int
    steps_per_epoch: int
    total_steps: int
    processes: int
    epoch_seconds: list[float]
    first_loss: float | None = None
    last_loss: float | None = None


class TrainingStep:
    """A method's part of the loop: subclasses implement :meth:`loss`, the trained state and :meth:`save`."""

    def bind(self, module: torch.nn.Module) -> None:
        """Called once, with the prepared module in train mode, before the first step (build the
        loss around it here)."""

    def loss(self, batch: Any, step: int) -> torch.Tensor | None:
        """The loss of ``batch`` at ``step`` (0-based); ``None``: nothing to learn from it (the
        optimizer does not step; the schedule does)."""
        raise NotImplementedError

    def after_step(self, step: int, loss: float) -> None:
        """Called after optimizer step number ``step`` (1-based) with its loss."""

    def progress(self) -> dict[str, Any]:
        """Extra fields of the progress bar."""
        return {}

    def synchronize(self) -> None:
        """Called on every process before each checkpoint and before the final save: share what
        the processes gathered on their own (collectives belong here, not in
        :meth:`checkpoint_extras` or :meth:`save`, which run on the main process only)."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors a checkpoint holds."""
        raise NotImplementedError

    def load_trainable_state(self, state: Mapping[str, torch.Tensor], where: str) -> None:
        raise NotImplementedError

    def checkpoint_extras(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What else a checkpoint holds: tensors (saved with the optimizer) and JSON state."""
        return {}, {}

    def load_checkpoint_extras(self, saved: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        """Restore :meth:`checkpoint_extras` from a checkpoint's optimizer file and ``state.json``."""

    def save(self, result: LoopResult) -> None:
        """Write the finished model (main process only)."""
        raise NotImplementedError


class EpochBatches(Protocol):
    """The batches of each epoch; ``steps_per_epoch`` of them (a no-duplicates sampler may yield more)."""

    steps_per_epoch: int

    def epoch(self, epoch: int, skip: int) -> Iterable[Any]:
        """Epoch ``epoch``'s batches after its first ``skip``."""
        ...


class ShuffledBatches:
    """``steps_per_epoch`` slices of ``batch_size`` of the order ``order_of(epoch)`` (a function of
    the seed and the epoch only)."""

    def __init__(self, order_of: Callable[[int], list[Any]], batch_size: int, steps_per_epoch: int):
        self.order_of, self.batch_size, self.steps_per_epoch = order_of, batch_size, steps_per_epoch

    def epoch(self, epoch: int, skip: int) -> Iterable[list[Any]]:
        order = self.order_of(epoch)
        for position in range(skip, self.steps_per_epoch):
            yield order[position * self.batch_size : (position + 1) * self.batch_size]


class LoaderBatches:
    """A DataLoader's global batches, each split across the processes (accelerate's
    ``split_batches``): process ``r`` of ``N`` takes rows ``[r * B, (r + 1) * B)`` of every batch of
    ``N * B`` rows, so ``N`` processes train on the batches one process would."""

    def __init__(self, accelerator: Any, loader: Any, sampler: Any):
        from accelerate.data_loader import prepare_data_loader

        self.accelerator, self.sampler = accelerator, sampler
        self.loader = prepare_data_loader(
            loader,
            accelerator.device,
            num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
            split_batches=True,
            put_on_device=True,
        )
        self.steps_per_epoch = len(sampler)

    def epoch(self, epoch: int, skip: int) -> Iterable[Any]:
        batches = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        # accelerate's loader re-sets its sampler's epoch from its own counter, which restarts at 0
        # in a resumed process: set it, so the batch order is a function of (seed, epoch) only.
        batches.set_epoch(epoch)
        # the skipping loader wraps the sampler and does not pass the epoch on
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        return batches


def run_loop(
    method: TrainingStep,
    batches: EpochBatches,
    settings: LoopSettings,
    folder: RunFolder,
    *,
    module: torch.nn.Module,
    parameters: list[torch.nn.Parameter],
    identity: Mapping[str, Any],
    normalize_identity: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    accelerator: Any = None,
    resume: bool = False,
    desc: str = "train",
    show_progress_bar: bool = True,
) -> LoopResult:
    """Train ``parameters`` of ``module`` with ``method``'s loss over ``batches``; returns what it did.

    ``identity`` is what a resumed run must share with the interrupted one (recorded in every
    checkpoint; an older checkpoint's record is passed through ``normalize_identity``). With
    ``resume`` the loop continues from ``folder``'s newest checkpoint. At the end (main process)
    ``method.save`` writes the finished model and the checkpoints are removed.
    """
    from transformers import get_linear_schedule_with_warmup

    accelerator = accelerator or new_accelerator()
    checkpoint = folder.resume_checkpoint(identity, normalize_identity) if resume else None
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    # accelerate's scheduler wrapper steps num_processes times per optimizer step (it assumes each
    # process takes its own batches), so the schedule is laid out over num_processes times the steps.
    processes = accelerator.num_processes
    steps_per_epoch = batches.steps_per_epoch
    total_steps = settings.total_steps(steps_per_epoch)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(settings.warmup_ratio * total_steps) * processes, total_steps * processes
    )
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    at = (
        _Position()
        if checkpoint is None
        else _restore(checkpoint, method, optimizer, scheduler, steps_per_epoch, accelerator.process_index)
    )

    def checkpoint_now(epoch: int, batches_done: int, elapsed: float) -> None:
        rng = _rng_states(accelerator)  # every process takes part in the gather
        method.synchronize()
        if not accelerator.is_main_process:
            return
        tensors, extra = method.checkpoint_extras()
        folder.save_checkpoint(
            at.step,
            method.trainable_state(),
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng, **tensors},
            {"epoch": epoch, "batches_done": batches_done, "epoch_seconds": at.epoch_times, "epoch_elapsed": elapsed,
             "first_loss": at.first_loss, **extra, "run": dict(identity)},
            keep=settings.keep_checkpoints,
        )  # fmt: skip

    progress = tqdm(total=total_steps, initial=at.step, desc=desc,
                    disable=not show_progress_bar or not accelerator.is_main_process)  # fmt: skip
    every = settings.checkpoint_every
    module.train()
    method.bind(module)
    while at.step < total_steps and (settings.epochs is None or at.epoch < settings.epochs):
        started, at.carried = time.perf_counter() - at.carried, 0.0
        for batch in batches.epoch(at.epoch, at.done_in_epoch):
            with accelerator.autocast():  # mixed precision's forward (nothing without it)
                loss = method.loss(batch, at.step)
            value = float("nan")
            if loss is not None:
                accelerator.backward(loss)
                if settings.max_grad_norm:
                    accelerator.clip_grad_norm_(parameters, settings.max_grad_norm)
                optimizer.step()
                value = float(accelerator.reduce(loss.detach(), "mean") if processes > 1 else loss.detach())
            if loss is None:  # a skipped step keeps the schedule's pace; torch would warn on a first one
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                    scheduler.step()
            else:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            at.last_loss = None if loss is None else value
            if at.step == 0:
                at.first_loss = at.last_loss
            at.step, at.done_in_epoch = at.step + 1, at.done_in_epoch + 1
            progress.update(1)
            progress.set_postfix(
                loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", **method.progress()
            )
            method.after_step(at.step, value)
            epoch_done = at.done_in_epoch >= steps_per_epoch
            if every and at.step % every == 0 and at.step < total_steps and not epoch_done:
                checkpoint_now(at.epoch, at.done_in_epoch, time.perf_counter() - started)
            if at.step >= total_steps:
                break
        at.epoch_times.append(time.perf_counter() - started)
        at.epoch, at.done_in_epoch = at.epoch + 1, 0
        if at.step < total_steps and every and (settings.checkpoint_epochs or at.step % every == 0):
            checkpoint_now(at.epoch, 0, 0.0)
    progress.close()
    module.eval()

    result = LoopResult(at.step, steps_per_epoch, total_steps, processes, [round(t, 2) for t in at.epoch_times],
                        at.first_loss, at.last_loss)  # fmt: skip
    method.synchronize()
    if accelerator.is_main_process:
        method.save(result)
        folder.clean_up()
    accelerator.wait_for_everyone()
    return result


def _rng_states(accelerator) -> dict[str, Any]:
    """The checkpoint's RNG entries: ``rng`` (this process's state; process 0's with several) and,
    with several processes, ``rng_ranks`` (every process's, in rank order)."""
    if accelerator.num_processes == 1:
        return {"rng": rng_state()}
    from accelerate.utils import gather_object

    states = gather_object([rng_state()])
    return {"rng": states[0], "rng_ranks": states}


def _restore(
    checkpoint: Checkpoint, method: TrainingStep, optimizer, scheduler, steps_per_epoch: int, rank: int
) -> _Position:
    """Put back what ``checkpoint`` holds (the trained tensors, optimizer, scheduler, process ``rank``'s
    RNG state and the method's extras); returns where the interrupted run stood."""
    method.load_trainable_state(checkpoint.trainable, where=str(checkpoint.path))
    optimizer.load_state_dict(checkpoint.optimizer_state["optimizer"])
    scheduler.load_state_dict(checkpoint.optimizer_state["scheduler"])
    saved = checkpoint.optimizer_state
    set_rng_state(saved["rng_ranks"][rank] if "rng_ranks" in saved else saved.get("rng", {}))
    method.load_checkpoint_extras(checkpoint.optimizer_state, checkpoint.state)
    at = _Position.of(checkpoint, steps_per_epoch)
    logger.info(
        "Resuming %s at step %d (epoch %d, batch %d)",
        checkpoint.path,
        at.step,
        at.epoch + 1,
        at.done_in_epoch,
    )
    return at


@dataclass
class _Position:
    """Where a run stands: steps taken, the epoch and the batches done in it, each epoch's seconds
    so far, (``carried``, on resume) the seconds the interrupted run had spent in the epoch it
    resumes (``epoch_seconds`` covers both segments), and the first and the latest step's loss."""

    step: int = 0
    epoch: int = 0
    done_in_epoch: int = 0
    epoch_times: list[float] = field(default_factory=list)
    carried: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None

    @classmethod
    def of(cls, checkpoint: Checkpoint, steps_per_epoch: int) -> _Position:
        state, step = checkpoint.state, checkpoint.step
        # checkpoints of ART and the DAM from before the one loop: fixed-length epochs, no position
        return cls(
            step=step,
            epoch=int(state["epoch"]) if "epoch" in state else step // steps_per_epoch,
            done_in_epoch=int(state["batches_done"]) if "batches_done" in state else step % steps_per_epoch,
            epoch_times=list(state.get("epoch_seconds", [])),
            carried=float(state.get("epoch_elapsed", 0.0)),
            first_loss=state.get("first_loss"),
        )


__all__ = [
    "EpochBatches",
    "LoaderBatches",
    "LoopResult",
    "LoopSettings",
    "ShuffledBatches",
    "TORCH_ADAMW_WEIGHT_DECAY",
    "TrainingStep",
    "run_loop",
]
