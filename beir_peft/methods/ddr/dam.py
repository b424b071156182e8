"""DDR's domain adaption module (DAM): the whole backbone trained by masked language modelling.

Zhan et al. 2022 (DDR, seed 004), section 3.3: a DAM is the backbone trained with MLM (15% of the
tokens selected; of those 80% become [MASK], 10% a random token, 10% stay) on one corpus. The source
DAM is trained on the training corpus; a target DAM on a target corpus, initialised from the source
DAM (the paper's sequential initialisation; Table 6 ablates it); lr 2e-5 and 20k steps in the paper.

A backbone without an MLM head (a sentence-transformers model such as all-MiniLM-L6-v2) gets a fresh
head whose decoder is tied to its word embeddings. A DAM folder is a sentence-transformers model
(usable as any ``--backbone``) plus ``mlm_head.safetensors`` (so a DAM initialised from it continues
with the trained head) and ``dam.json`` (how it was made). Training checkpoints every
``checkpoint_every`` steps and resumes exactly; the folder is moved into place when complete.

Each step's masks are drawn from a generator seeded by the run's seed and the step (apart from the
dropout stream), so on ``N`` processes (``batch_size`` per process) every process masks the same
global batch of ``N x batch_size`` texts and trains on its contiguous share, each share's summed
token loss divided by the global batch's masked tokens: the gradient DistributedDataParallel
averages is one process's on the global batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...encoders.backbone import hf_model, load_backbone, resolve_backbone
from ...errors import ArtifactError, ConfigError, DatasetError
from ...io import atomic_directory, save_safetensors_atomic, write_json_atomic
from ...training.adaptation_check import held_out_sample
from ...training.loop import (
    TORCH_ADAMW_WEIGHT_DECAY,
    LoopResult,
    LoopSettings,
    ShuffledBatches,
    TrainingStep,
    run_loop,
)
from ...training.processes import new_accelerator
from ...training.run_folder import RunFolder, one_process_unless_said

logger = logging.getLogger(__name__)

DAM_FILE = "dam.json"
HEAD_FILE = "mlm_head.safetensors"


@dataclass
class DAMConfig:
    """MLM settings (the paper's target-DAM values by default)."""

    steps: int = 20_000
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.0
    mlm_probability: float = 0.15
    max_seq_length: int | None = None  # None: the backbone's own
    checkpoint_every: int = 1_000
    seed: int = 42
    device: str | None = None
    # texts kept out of training for the adaptation check (at most a tenth; 0: no check)
    held_out_passages: int = 200

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.held_out_passages < 0:
            raise ConfigError(f"held_out_passages must be >= 0, got {self.held_out_passages}")


def is_dam(path: str | os.PathLike) -> bool:
    return (Path(path) / DAM_FILE).is_file()


def masking_collator(tokenizer, mlm_probability: float = 0.15, seed: int | None = None):
    """transformers' MLM collator: ``mlm_probability`` of the tokens selected, 80/10/10 (BERT's rule)."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed)


def _mlm_model(pipeline, init: Path | None):
    """A masked-LM model around ``pipeline``'s encoder: its own weights, a head tied to its embeddings."""
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    encoder = hf_model(pipeline)
    try:
        mlm = AutoModelForMaskedLM.from_config(encoder.config)
    except ValueError as err:
        raise ConfigError(f"{encoder.config.model_type} has no masked-LM form: {err}") from err
    missing, unexpected = mlm.base_model.load_state_dict(encoder.state_dict(), strict=False)
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ArtifactError(
            f"the encoder does not fit {type(mlm).__name__}: missing {missing}, unexpected {unexpected}"
        )
    mlm.tie_weights()
    if init is not None and (init / HEAD_FILE).is_file():  # continue with a DAM's trained head
        head = load_file(str(init / HEAD_FILE))
        mlm.load_state_dict(head, strict=False)
        logger.info("MLM head from %s", init / HEAD_FILE)
    return mlm


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with one name per storage (tied tensors, e.g. BERT's two head biases, saved once)."""
    seen, out = set(), {}
    for name, tensor in state.items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        out[name] = tensor.detach().contiguous()
    return out


def _trained_state(mlm) -> dict[str, torch.Tensor]:
    """Everything MLM training changes, without the decoder weight (it is the tied word embeddings)."""
    return _unshared({k: v for k, v in mlm.state_dict().items() if "decoder.weight" not in k})


def _head_state(mlm) -> dict[str, torch.Tensor]:
    prefix = mlm.base_model_prefix + "."
    return {k: v for k, v in _trained_state(mlm).items() if not k.startswith(prefix)}


def train_dam(
    init: str,
    texts: Sequence[str],
    output: str | os.PathLike,
    config: DAMConfig | None = None,
    corpus_name: str = "corpus",
    show_progress_bar: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Train a DAM by MLM on ``texts`` starting from ``init`` (a backbone or another DAM); returns ``output``.

    A finished ``output`` (with ``dam.json``) made with the same settings is returned as is (one
    made with others is refused); checkpoints in ``output.run/checkpoints/`` resume a killed run.
    ``config.held_out_passages`` of the texts are not trained on but scored at the end by the
    adaptation check (:mod:`.dam_check`), whose line goes to ``echo`` (default: the log).
    """
    config = config or DAMConfig()
    folder = RunFolder(Path(output), trained_with=_trained_with, record=DAM_FILE, holds_model=is_dam, beside=True,
                       what="DAM")  # fmt: skip
    texts = [t for t in texts if t.strip()]
    identity = {"init": init, "corpus": corpus_name, "texts": len(texts), **dataclasses.asdict(config)}
    identity.pop("device")
    accelerator = new_accelerator(device_placement=False)
    identity["world_size"] = accelerator.num_processes
    held = set(held_out_sample([str(i) for i in range(len(texts))], config.held_out_passages, config.seed))
    held_out = [t for i, t in enumerate(texts) if str(i) in held]
    texts = [t for i, t in enumerate(texts) if str(i) not in held]
    device = torch.device(config.device) if config.device else accelerator.device
    folder.check(resume=True)
    if folder.finished(identity):  # the same settings check as for a run that resumes from a checkpoint
        _check_dam(init, folder.output, held_out, config, device, accelerator, echo)
        return folder.output
    if not texts:
        raise DatasetError("a DAM needs a corpus with text")
    torch.manual_seed(config.seed)
    mlm, pipeline = _mlm_of(init)
    mlm = mlm.to(device)
    tokenizer = pipeline.tokenizer
    max_len = config.max_seq_length or pipeline.max_seq_length
    encoded = tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]
    step = _MLMStep(mlm, pipeline, encoded, masking_collator(tokenizer, config.mlm_probability), device,
                    folder.output, identity, accelerator, config.seed)  # fmt: skip
    global_batch = config.batch_size * accelerator.num_processes
    batches = ShuffledBatches(
        lambda epoch: torch.randperm(
            len(encoded), generator=torch.Generator().manual_seed(config.seed + epoch)
        ).tolist(),
        global_batch,
        max(1, len(encoded) // global_batch),
    )
    settings = LoopSettings(
        learning_rate=config.learning_rate,
        epochs=None,
        max_steps=config.steps,
        warmup_ratio=config.warmup_ratio,
        weight_decay=TORCH_ADAMW_WEIGHT_DECAY,
        max_grad_norm=1.0,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=1,
    )

    if accelerator.process_index:  # each process its own dropout (process 0: the seed's stream, as alone)
        torch.manual_seed(config.seed + accelerator.process_index)
    run_loop(step, batches, settings, folder, module=mlm, parameters=list(mlm.parameters()), identity=identity,
             normalize_identity=_older, accelerator=accelerator, resume=True,
             desc=f"DAM (MLM) on {corpus_name}", show_progress_bar=show_progress_bar)  # fmt: skip
    _check_dam(init, folder.output, held_out, config, device, accelerator, echo)
    return folder.output


def _mlm_of(path: str):
    """``(masked-LM model, pipeline)`` of a backbone or DAM folder: a DAM's trained head, else a
    fresh one (drawn from the torch RNG as it stands)."""
    pipeline = load_backbone(path, device="cpu")
    resolved = Path(resolve_backbone(path))
    return _mlm_model(pipeline, resolved if resolved.is_dir() else None), pipeline


def _check_dam(init: str, output: Path, held_out: list[str], config: DAMConfig, device, accelerator,
               echo) -> None:  # fmt: skip
    """The adaptation check of a finished DAM (:mod:`.dam_check`), on the main process: ``init`` as
    training started from it (the same seeded fresh head) against the saved DAM on the held-out texts."""
    if accelerator.is_main_process and held_out:
        from .dam_check import check_dam, masked_batches, masked_token_scores

        def measure():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)  # as train_dam seeds before building its start
                start, pipeline = _mlm_of(init)
            max_len = config.max_seq_length or pipeline.max_seq_length
            encoded = pipeline.tokenizer(held_out, truncation=True, max_length=max_len)["input_ids"]
            collator = masking_collator(pipeline.tokenizer, config.mlm_probability)
            batches = masked_batches(collator, encoded, config.batch_size, config.seed)
            scores = masked_token_scores(start.to(device), batches, device)
            del start
            return scores, masked_token_scores(_mlm_of(str(output))[0].to(device), batches, device)

        check_dam(output / DAM_FILE, len(held_out), measure, start_name=init, echo=echo)
    accelerator.wait_for_everyone()


class _MLMStep(TrainingStep):
    """One masked-LM step on a batch of tokenised texts; the finished DAM copies the encoder back."""

    def __init__(
        self, mlm, pipeline, encoded, collator, device, output: Path, identity, accelerator, seed: int
    ):
        self.mlm, self.pipeline, self.encoded, self.collator = mlm, pipeline, encoded, collator
        self.device, self.output, self.identity = device, output, identity
        self.accelerator, self.seed = accelerator, seed
        self.forward = mlm

    def bind(self, module):
        self.forward = module  # through DistributedDataParallel on several processes

    def loss(self, rows, step):
        with torch.random.fork_rng(devices=[]):  # the masks: a function of (seed, step) only
            torch.manual_seed(self.seed * 2**32 + step)
            batch = self.collator([{"input_ids": self.encoded[i]} for i in rows])
        masked = int((batch["labels"] != -100).sum())
        if not masked:  # the whole global batch, alike on every process
            return None
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per = math.ceil(len(rows) / processes)
        mine = slice(min(rank * per, len(rows)), min((rank + 1) * per, len(rows)))
        # a process without rows still runs the forward (the gradient reduction needs it), weighted 0
        weight = processes / masked if mine.start < mine.stop else 0.0
        part = {k: v[mine] if weight else v[:1] for k, v in batch.items()}
        columns = part["attention_mask"].bool().any(dim=0)  # drop the columns only others' rows fill
        part = {k: v[:, columns].to(self.device) for k, v in part.items()}
        labels = part.pop("labels")
        logits = self.forward(**part).logits
        summed = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
        )
        return summed * weight

    def trainable_state(self):
        return _trained_state(self.mlm)

    def load_trainable_state(self, state, where):
        self.mlm.load_state_dict(state, strict=False)
        self.mlm.tie_weights()

    def save(self, result: LoopResult):
        encoder = hf_model(self.pipeline)
        missing, _ = encoder.load_state_dict(self.mlm.base_model.state_dict(), strict=False)
        if [k for k in missing if not k.startswith("pooler.")]:
            raise ArtifactError(f"cannot copy the trained encoder back: missing {missing}")
        with atomic_directory(self.output) as folder:
            self.pipeline.save(str(folder))
            save_safetensors_atomic(_head_state(self.mlm.cpu()), folder / HEAD_FILE)
            write_json_atomic(
                folder / DAM_FILE,
                {**self.identity, "steps_done": result.steps, "first_loss": result.first_loss,
                 "last_loss": result.last_loss, "kind": "ddr-dam"},
            )  # fmt: skip


def _trained_with(output: Path) -> dict[str, Any]:
    """A DAM's record (:func:`_older` for one written before it said everything)."""
    return _older(read_dam(output))


def _older(saved: dict[str, Any]) -> dict[str, Any]:
    """A record or checkpoint identity from before the DAM split its batches (one process) or held
    texts out (every text trained on)."""
    return {"held_out_passages": 0, **one_process_unless_said(saved)}


def read_dam(path: str | os.PathLike) -> dict[str, Any]:
    """A DAM folder's ``dam.json``; :class:`ArtifactError` when ``path`` is not a DAM."""
    path = Path(path)
    if not is_dam(path):
        raise ArtifactError(f"{path}: not a DAM folder (no {DAM_FILE}); make one with `beir-peft ddr dam`")
    try:
        return json.loads((path / DAM_FILE).read_text(encoding="utf-8"))
    except ValueError as err:
        raise ArtifactError(f"{path / DAM_FILE}: {err}") from err


__all__ = ["DAMConfig", "is_dam", "masking_collator", "read_dam", "train_dam"]
