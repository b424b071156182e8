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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ...encoders.backbone import hf_model, load_backbone, resolve_backbone
from ...errors import ArtifactError, ConfigError, DatasetError
from ...io import atomic_directory, save_safetensors_atomic, write_json_atomic
from ...training.checkpoints import (
    check_same_settings,
    resume_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

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

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


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
) -> Path:
    """Train a DAM by MLM on ``texts`` starting from ``init`` (a backbone or another DAM); returns ``output``.

    A finished ``output`` (with ``dam.json``) made with the same settings is returned as is (one
    made with others is refused); checkpoints in ``output.run/checkpoints/`` resume a killed run.
    """
    from transformers import get_linear_schedule_with_warmup

    config = config or DAMConfig()
    output = Path(output)
    texts = [t for t in texts if t.strip()]
    identity = {"init": init, "corpus": corpus_name, "texts": len(texts), **dataclasses.asdict(config)}
    identity.pop("device")
    if is_dam(output):  # the same settings check as for a run that resumes from a checkpoint
        check_same_settings(output / DAM_FILE, read_dam(output), identity)
        logger.info("%s is a finished DAM", output)
        return output
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output}: exists and is not a DAM folder; choose a new output folder")
    if not texts:
        raise DatasetError("a DAM needs a corpus with text")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    pipeline = load_backbone(init, device="cpu")
    init_path = Path(resolve_backbone(init))
    mlm = _mlm_model(pipeline, init_path if init_path.is_dir() else None).to(device)
    tokenizer = pipeline.tokenizer
    max_len = config.max_seq_length or pipeline.max_seq_length
    encoded = tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]
    collator = masking_collator(tokenizer, config.mlm_probability)

    optimizer = torch.optim.AdamW(mlm.parameters(), lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * config.steps), config.steps
    )
    run_dir = output.with_name(output.name + ".run")
    step = 0
    checkpoint = resume_checkpoint(run_dir, identity)  # refuses a run made with other settings
    if checkpoint is not None:
        mlm.load_state_dict(checkpoint.trainable, strict=False)
        mlm.tie_weights()
        optimizer.load_state_dict(checkpoint.optimizer_state["optimizer"])
        scheduler.load_state_dict(checkpoint.optimizer_state["scheduler"])
        set_rng_state(checkpoint.optimizer_state.get("rng", {}))
        step = checkpoint.step
        logger.info("Resuming the DAM at step %d", step)

    per_epoch = max(1, len(encoded) // config.batch_size)
    mlm.train()
    progress = tqdm(
        total=config.steps, initial=step, desc=f"DAM (MLM) on {corpus_name}", disable=not show_progress_bar
    )
    while step < config.steps:
        epoch, position = divmod(step, per_epoch)
        order = torch.randperm(
            len(encoded), generator=torch.Generator().manual_seed(config.seed + epoch)
        ).tolist()
        rows = order[position * config.batch_size : (position + 1) * config.batch_size]
        batch = collator([{"input_ids": encoded[i]} for i in rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = mlm(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            save_checkpoint(run_dir, step, _trained_state(mlm),
                            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                            {"run": identity}, keep=1)  # fmt: skip
    progress.close()
    mlm.eval()
    encoder = hf_model(pipeline)
    missing, _ = encoder.load_state_dict(mlm.base_model.state_dict(), strict=False)
    if [k for k in missing if not k.startswith("pooler.")]:
        raise ArtifactError(f"cannot copy the trained encoder back: missing {missing}")
    with atomic_directory(output) as folder:
        pipeline.save(str(folder))
        save_safetensors_atomic(_head_state(mlm.cpu()), folder / HEAD_FILE)
        write_json_atomic(folder / DAM_FILE, {**identity, "steps_done": step, "kind": "ddr-dam"})
    shutil.rmtree(run_dir, ignore_errors=True)
    return output


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
