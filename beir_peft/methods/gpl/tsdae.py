"""Optional TSDAE pre-training of the student's backbone on the target corpus (GPL's best variant).

Wang et al. 2021 (TSDAE) as used by GPL (seed 002, section 5, "TSDAE + GPL"): a denoising
auto-encoder whose encoder is the backbone and whose decoder (tied to it) must rebuild each passage
from its sentence embedding after 60% of its words were deleted; 100K steps at batch size 8 in the
paper (:attr:`GPLConfig.tsdae_steps`), learning rate 3e-5. sentence-transformers' own
``DenoisingAutoEncoderLoss`` and trainer do the work; trainer checkpoints in ``tsdae.checkpoints/``
make a killed pre-training resume, and the finished model is moved into place atomically.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

from ...io import atomic_directory

logger = logging.getLogger(__name__)

DELETION_RATIO = 0.6
BATCH_SIZE = 8
LEARNING_RATE = 3e-5


def delete_words(text: str, ratio: float, rng: random.Random) -> str:
    """``text`` with each whitespace-separated word deleted with probability ``ratio`` (one word kept at least)."""
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= ratio]
    return " ".join(kept) if kept else rng.choice(words)


def train_tsdae(
    backbone: str, texts: list[str], output: Path, config: Any, show_progress_bar: bool = True
) -> Path:
    """Pre-train ``backbone`` with TSDAE on ``texts`` for ``config.tsdae_steps`` steps; saved to ``output``."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss
    from transformers.trainer_utils import get_last_checkpoint

    from ...encoders.backbone import load_backbone

    model = load_backbone(backbone, device=config.device)
    rng = random.Random(config.seed)
    data = Dataset.from_dict(
        {"damaged": [delete_words(t, DELETION_RATIO, rng) for t in texts], "original": texts}
    )
    loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    checkpoints = output.with_name(output.name + ".checkpoints")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        max_steps=config.tsdae_steps,
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        save_steps=max(1, config.checkpoint_every),
        save_total_limit=2,
        logging_steps=max(1, config.tsdae_steps // 20),
        report_to="none",
        seed=config.seed,
        disable_tqdm=not show_progress_bar,
        use_cpu=config.device == "cpu",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last:
        logger.info("Resuming TSDAE from %s", last)
    trainer.train(resume_from_checkpoint=last)  # on several processes: the Trainer's own DDP
    if trainer.is_world_process_zero():
        with atomic_directory(output) as folder:
            model.save(str(folder))
        shutil.rmtree(checkpoints, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return output
