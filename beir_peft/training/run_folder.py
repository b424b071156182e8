"""The one policy for a training run's output folder: checked before any work, resumed, overwritten,
recognised as finished (with the same settings check as a resumed run), cleaned up.

Two layouts:

* checkpoints inside the output (``<output>/checkpoints/step-N/``): the saved retriever is written
  into the same folder at the end (supervised training, GPL, DDR's REM, ART);
* checkpoints beside it (``<output>.run/checkpoints/step-N/``): the model folder is built elsewhere
  and moved into place whole when complete (DDR's DAM), so an ``output`` that exists is finished.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import CONFIG_NAME, is_retriever_folder, read_config
from ..errors import ConfigError
from . import checkpoints
from .checkpoints import CHECKPOINTS, Checkpoint, check_same_settings, checkpoint_dirs

logger = logging.getLogger(__name__)


def training_record(output: Path) -> dict[str, Any]:
    """The training record of a saved retriever folder (``config.json``'s ``training``)."""
    return read_config(output).get("training") or {}


def one_process_unless_said(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A run record or checkpoint identity from before ``world_size`` was recorded: one process."""
    return {"world_size": 1, **saved}


@dataclass(frozen=True)
class RunFolder:
    """Where one training run writes, and the rules for what it may find there.

    Attributes:
        output: the final model folder.
        trained_with: ``output -> settings``: what a finished ``output`` says it was trained with
            (compared with the settings of the run asked for).
        record: the file of ``output`` that holds those settings (named in refusals).
        holds_model: whether a folder holds a finished model.
        beside: checkpoints in the sibling ``<output>.run/`` instead of inside ``output``.
        what: the kind of model, for messages.
    """

    output: Path
    trained_with: Callable[[Path], Mapping[str, Any]] = field(default=training_record)
    record: str = CONFIG_NAME
    holds_model: Callable[[Path], bool] = field(default=is_retriever_folder)
    beside: bool = False
    what: str = "retriever"

    def __post_init__(self):
        object.__setattr__(self, "output", Path(self.output))

    @property
    def checkpoint_root(self) -> Path:
        """The folder whose ``checkpoints/`` holds the run's checkpoints."""
        return self.output.with_name(self.output.name + ".run") if self.beside else self.output

    def check(self, resume: bool = False, overwrite: bool = False) -> None:
        """Refuse, before any work, an output the run may not write to.

        A path that is not a folder; a folder that already holds a run (a model or checkpoints)
        when neither ``resume`` nor ``overwrite`` allows it; with checkpoints beside, a folder that
        holds something other than a finished model (it would be replaced whole at the end).
        """
        output = self.output
        if output.exists() and not output.is_dir():
            raise ConfigError(f"{output}: exists and is not a folder")
        if self.beside and output.is_dir() and any(output.iterdir()) and not self.holds_model(output):
            raise ConfigError(f"{output}: exists and is not a {self.what} folder; choose a new output folder")
        if resume or overwrite or not output.is_dir():
            return
        if self.holds_model(output) or checkpoint_dirs(self.checkpoint_root):
            raise ConfigError(
                f"{output}: already holds a training run; pass --resume to continue it or --overwrite to start again"
            )

    def clear(self, *files: str) -> None:
        """``--overwrite``: remove the run's checkpoints, the finished model's record and ``files``."""
        shutil.rmtree(self.checkpoint_root / CHECKPOINTS, ignore_errors=True)
        if self.output.is_dir():
            for name in (self.record, *files):
                (self.output / name).unlink(missing_ok=True)

    def finished(self, wanted: Mapping[str, Any]) -> bool:
        """Whether ``output`` holds the finished model of the run ``wanted`` describes.

        A finished model made with other settings is refused with the same :class:`ConfigError`
        as an interrupted one, so a resumed run never reports success on a folder that holds
        another model. Inside the folder, checkpoints beside a model mean a run still going on.
        """
        if not self.holds_model(self.output):
            return False
        if not self.beside and checkpoint_dirs(self.checkpoint_root):
            return False
        check_same_settings(self.output / self.record, self.trained_with(self.output), wanted)
        logger.info("%s already holds the finished %s; nothing to resume", self.output, self.what)
        return True

    def resume_checkpoint(
        self,
        wanted: Mapping[str, Any],
        normalize: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> Checkpoint | None:
        """The newest checkpoint, refused when made with other settings (see
        :func:`~beir_peft.training.checkpoints.resume_checkpoint`)."""
        return checkpoints.resume_checkpoint(self.checkpoint_root, wanted, normalize)

    def save_checkpoint(self, step: int, trainable, optimizer_state, state, keep: int) -> Path:
        return checkpoints.save_checkpoint(
            self.checkpoint_root, step, trainable, optimizer_state, state, keep
        )

    def clean_up(self) -> None:
        """Remove the checkpoints once the finished model supersedes them (for ``ft``, each holds a
        whole backbone)."""
        shutil.rmtree(self.checkpoint_root if self.beside else self.output / CHECKPOINTS, ignore_errors=True)


__all__ = ["RunFolder", "one_process_unless_said", "training_record"]
