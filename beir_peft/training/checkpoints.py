"""Training checkpoints: ``<run>/checkpoints/step-<N>/`` folders that a killed run resumes from.

A checkpoint holds the trainable tensors (``trainable.safetensors``), the optimizer, scheduler and
RNG states (``optimizer.pt``, read back with ``torch.load(weights_only=True)``: tensors and plain
containers only) and ``state.json`` (step, epoch, batches done in the epoch, the seconds spent
so far, the run's settings). Each folder is built under a temporary name and renamed when complete,
so a checkpoint that exists is whole. Only the newest ``keep`` checkpoints are kept.

Resuming checks the run's settings against what the newest checkpoint recorded
(:func:`resume_checkpoint`) or, once the run has finished, against the finished model's record
(:meth:`~beir_peft.training.run_folder.RunFolder.finished`): a run is never continued, nor a
finished one returned, with other settings than it was made with.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ArtifactError, ConfigError
from ..io import atomic_directory, save_safetensors_atomic, write_json_atomic

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``trainable`` tensors, ``optimizer_state`` dict and ``state`` (JSON)."""

    path: Path
    trainable: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    trainable: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-<step>`` atomically and prune all but the newest ``keep``."""
    target = Path(run_dir) / CHECKPOINTS / f"step-{step}"
    with atomic_directory(target) as tmp:
        save_safetensors_atomic(dict(trainable), tmp / "trainable.safetensors")
        torch.save(dict(optimizer_state), tmp / "optimizer.pt")
        write_json_atomic(tmp / "state.json", {**state, "step": step})
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        trainable = load_file(str(path / "trainable.safetensors"))
        optimizer_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: unreadable checkpoint ({exc})") from exc
    return Checkpoint(path, trainable, optimizer_state, state)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The newest checkpoint of a run, or ``None`` when it has none."""
    dirs = checkpoint_dirs(run_dir)
    return load_checkpoint(dirs[-1]) if dirs else None


def resume_checkpoint(
    run_dir: str | Path,
    wanted: Mapping[str, Any],
    normalize: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Checkpoint | None:
    """The newest checkpoint of ``run_dir`` (``None`` when there is none), refused with a one-line
    :class:`ConfigError` when the settings it recorded (``state["run"]``, passed through
    ``normalize``) differ from ``wanted`` in any of ``wanted``'s keys."""
    run_dir = Path(run_dir)
    checkpoint = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if checkpoint is None:
        return None
    saved = checkpoint.state.get("run") or {}
    check_same_settings(checkpoint.path, normalize(saved) if normalize is not None else saved, wanted)
    return checkpoint


def check_same_settings(where: str | Path, saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """A one-line :class:`ConfigError` naming ``where`` when ``saved`` differs from ``wanted`` in
    any of ``wanted``'s keys."""
    changed = [k for k in wanted if saved.get(k) != wanted[k]]
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise ConfigError(f"{where}: cannot resume with different settings ({detail})")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
