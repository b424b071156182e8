"""The training engine on its own: a toy step through run_loop, the checkpoint rule, exact resume
and the run-folder policy (both layouts), without any retriever."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from beir_peft.errors import ConfigError
from beir_peft.training.checkpoints import checkpoint_dirs
from beir_peft.training.loop import LoopSettings, ShuffledBatches, TrainingStep, run_loop
from beir_peft.training.run_folder import RunFolder

DONE = "done.json"


class Interrupt(Exception):
    pass


class ToyStep(TrainingStep):
    """Regression of 12 fixed points through a dropout layer (the RNG matters on resume); the steps
    in ``skip`` have no loss (as an ART batch without an informative question)."""

    def __init__(self, module, output: Path, die_at: int | None = None, skip: tuple[int, ...] = ()):
        self.module, self.output, self.die_at, self.skip, self.seen = module, output, die_at, skip, []
        generator = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(12, 3, generator=generator), torch.randn(12, 1, generator=generator)

    def loss(self, batch, step):
        self.seen.append((step, list(batch)))
        if step in self.skip:
            return None
        return torch.nn.functional.mse_loss(self.module(self.x[batch]), self.y[batch])

    def after_step(self, step, loss):
        if step == self.die_at:
            raise Interrupt

    def trainable_state(self):
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load_trainable_state(self, state, where):
        self.module.load_state_dict(state)

    def save(self, result):
        self.output.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), self.output / "weights.pt")
        (self.output / DONE).write_text(json.dumps({"seed": 0, "steps": result.steps}), encoding="utf-8")


def toy_folder(output: Path, beside: bool = False) -> RunFolder:
    return RunFolder(output, trained_with=lambda p: json.loads((p / DONE).read_text(encoding="utf-8")), record=DONE,
                     holds_model=lambda p: (p / DONE).is_file(), beside=beside, what="toy")  # fmt: skip


def train_toy(
    output: Path, die_at: int | None = None, resume: bool = False, beside: bool = False, skip=(), **settings
):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(3, 1))
    step = ToyStep(module, output, die_at, skip)
    batches = ShuffledBatches(lambda epoch: torch.randperm(12, generator=torch.Generator().manual_seed(epoch)).tolist(),
                              batch_size=4, steps_per_epoch=3)  # fmt: skip
    options = {"learning_rate": 0.1, "epochs": 3, "warmup_ratio": 0.2, "checkpoint_every": 2, **settings}
    result = run_loop(step, batches, LoopSettings(**options), toy_folder(output, beside), module=module,
                      parameters=list(module.parameters()), identity={"seed": 0}, resume=resume,
                      show_progress_bar=False)  # fmt: skip
    return module, step, result


def test_a_killed_and_resumed_run_ends_with_the_same_weights_and_batches(tmp_path):
    whole, whole_step, result = train_toy(tmp_path / "whole")
    assert (result.steps, result.steps_per_epoch, result.total_steps) == (9, 3, 9)
    assert len(result.epoch_seconds) == 3
    with pytest.raises(Interrupt):
        train_toy(tmp_path / "cut", die_at=5)  # checkpoints at step 2 and 4 (mid-epoch), killed in step 5
    assert [p.name for p in checkpoint_dirs(tmp_path / "cut")] == ["step-2", "step-4"]
    resumed, resumed_step, _ = train_toy(tmp_path / "cut", resume=True)
    assert resumed_step.seen == whole_step.seen[4:]  # the same batches from step 4 on
    for x, y in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(x, y)
    assert checkpoint_dirs(tmp_path / "cut") == []  # the finished model supersedes them


def test_checkpoint_rule_every_n_steps_and_optionally_every_epoch(tmp_path):
    # 9 steps, 3 per epoch, every 4: step 4 and 8 (none after the last); with epochs also 3 and 6
    for epochs_too, expected in (
        (False, ["step-4", "step-8"]),
        (True, ["step-3", "step-4", "step-6", "step-8"]),
    ):
        output = tmp_path / str(epochs_too)
        with pytest.raises(Interrupt):
            train_toy(output, die_at=9, checkpoint_every=4, checkpoint_epochs=epochs_too, keep_checkpoints=10)
        assert [p.name for p in checkpoint_dirs(output)] == expected


def test_max_steps_cuts_the_schedule_and_epochs_none_runs_until_it(tmp_path):
    assert train_toy(tmp_path / "a", max_steps=4)[2].total_steps == 4
    assert train_toy(tmp_path / "b", epochs=None, max_steps=11)[2].steps == 11
    with pytest.raises(ConfigError, match="epochs or max_steps"):
        LoopSettings(learning_rate=0.1, epochs=None)


def test_a_step_without_loss_keeps_the_schedule_and_warns_nothing(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's scheduler-before-optimizer warning would fail here
        module, step, result = train_toy(tmp_path / "skip", skip=(0, 4), checkpoint_every=0)
    assert result.steps == 9 and result.first_loss is None and result.last_loss is not None
    assert len(step.seen) == 9


def test_run_folder_inside_refuses_a_run_without_resume_or_overwrite(tmp_path):
    train_toy(tmp_path / "run")
    folder = toy_folder(tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a training run"):
        folder.check()
    folder.check(resume=True)
    assert folder.finished({"seed": 0})
    with pytest.raises(
        ConfigError, match=r"done.json: cannot resume with different settings \(seed: 0 -> 1\)"
    ):
        folder.finished({"seed": 1})
    folder.clear()
    assert not folder.finished({"seed": 0})
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        toy_folder(tmp_path / "a-file").check(resume=True)


def test_run_folder_beside_keeps_checkpoints_in_a_sibling_and_refuses_other_content(tmp_path):
    with pytest.raises(Interrupt):
        train_toy(tmp_path / "out", die_at=3, beside=True)
    assert checkpoint_dirs(tmp_path / "out.run") and not (tmp_path / "out").exists()
    train_toy(tmp_path / "out", resume=True, beside=True)
    assert not (tmp_path / "out.run").exists() and toy_folder(tmp_path / "out", beside=True).finished(
        {"seed": 0}
    )
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a toy folder"):
        toy_folder(occupied, beside=True).check(resume=True)
