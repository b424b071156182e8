"""ART training: a dual encoder learns from questions alone, a frozen language model as teacher.

Sachan et al. 2023 (ART, seed 003), section 2 and 4.1. Each step, for a batch of questions:

1. the current query encoder retrieves the top-``K`` passages (default 32) from passage embeddings
   that the current passage encoder rebuilds every ``refresh_every`` steps (default 500; at step 0,
   500, 1000, ...);
2. the ``K`` passages are re-encoded *with* gradients; the student distribution is the softmax of
   the dot products divided by the student temperature (:func:`student_temperature`: the authors'
   ``sqrt(hidden size)`` for raw vectors, 0.05 for unit vectors);
3. the teacher distribution is the softmax over the ``K`` passages of the frozen LM's mean token
   log-likelihood of the question given the passage (:mod:`.teacher`, cached per pair);
4. the loss is ``KL(teacher || student)`` (:class:`beir_peft.losses.ARTDistillKLLoss`); both
   encoders update.

The paper trains BERT-base dual encoders (separate query and passage encoders, [CLS], dot product)
with batch 64, lr 2e-5, 10 epochs, warm-up and linear decay. Here the student is any backbone
(default all-MiniLM-L6-v2 with its own pooling and final ``Normalize``; ``pooling="cls"`` for the
paper's; docs/art.md, "The student's scale"), fully trained as
two encoders (``ft``, the paper) or as PT2-DPR prompts (one prefix per side) or LoRA (one adapter per
side). Checkpoints hold the trained tensors, optimizer, scheduler, RNG, the current passage
embeddings and the teacher cache, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ...artifacts import save_retriever
from ...encoders.backbone import DEFAULT_BACKBONE
from ...errors import ConfigError, DatasetError
from ...models.base import PASSAGE, QUERY, passage_text
from ...registry import student_methods
from ...training.checkpoints import (
    CHECKPOINTS,
    finished_run,
    resume_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .teacher import DEFAULT_TEACHER, QuestionReconstructionTeacher, TeacherCache, teacher_record

logger = logging.getLogger(__name__)

STUDENTS = student_methods()
#: ART's learning rate for full fine-tuning (the paper); prompt and LoRA students take the package's
DEFAULT_LEARNING_RATES = {"ft": 2e-5, "pt2-dpr": 1e-3, "lora": 5e-4}
#: the student temperature on unit vectors: sentence-transformers' MultipleNegativesRankingLoss scale 20,
#: the one cosine backbones such as all-MiniLM-L6-v2 were trained at
COSINE_TEMPERATURE = 0.05
#: teacher scores closer than this over a question's K passages count as tied (no signal)
TIED = 1e-6


@dataclass
class ARTConfig:
    """ART settings (paper defaults, section 4.1, except the backbone: see the module docstring)."""

    student: str = "ft"
    backbone: str = DEFAULT_BACKBONE
    pooling: str | None = None
    # None: the backbone's own pipeline (MiniLM: unit vectors); False: drop the final Normalize
    normalize: bool | None = None
    # the student's scores are dot / student_temperature; None: by the embeddings' geometry
    # (student_temperature(): sqrt(hidden size) for raw vectors [code], 0.05 for unit vectors)
    student_temperature: float | None = None
    max_seq_length: int | None = None  # None: the backbone's own (MiniLM: 256)
    teacher: str = DEFAULT_TEACHER
    top_k: int = 32
    refresh_every: int = 500
    batch_size: int = 64
    learning_rate: float | None = None
    epochs: int = 10
    max_steps: int | None = None
    warmup_ratio: float = 0.01
    max_grad_norm: float = 1.0
    teacher_batch_size: int = 16
    teacher_dtype: str = "auto"
    encode_batch_size: int = 128
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 42
    device: str | None = None

    def __post_init__(self):
        if self.student not in STUDENTS:
            raise ConfigError(f"ART students are {', '.join(STUDENTS)}; got {self.student!r}")
        for name in (
            "top_k",
            "refresh_every",
            "batch_size",
            "epochs",
            "teacher_batch_size",
            "encode_batch_size",
        ):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.top_k < 2:
            raise ConfigError("top_k must be >= 2 (a softmax over one passage teaches nothing)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be >= 1")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be >= 8, got {self.max_seq_length}")
        if self.student_temperature is not None and not self.student_temperature > 0:
            raise ConfigError(f"student_temperature must be > 0, got {self.student_temperature}")

    def learning_rate_for_student(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.student]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: settings a resumed run must share with the interrupted one
_IDENTITY = ("student", "backbone", "pooling", "normalize", "student_temperature", "max_seq_length", "teacher",
             "top_k", "refresh_every", "batch_size", "learning_rate", "epochs", "max_steps", "seed")  # fmt: skip


def build_student(config: ARTConfig):
    """The dual encoder ART trains: two encoders (ft, LoRA) or two prompts (pt2-dpr) over the backbone.

    A dot-product model whose embeddings are normalised as ``config.normalize`` says (default: as
    the backbone's pipeline does; on unit vectors the dot product is the cosine).
    """
    from ...models.tuned import build_retriever

    options: dict[str, Any] = {
        "pooling": config.pooling,
        "normalize": config.normalize,
        "max_seq_length": config.max_seq_length,
    }
    if config.student != "pt2-dpr":
        options["separate_encoders"] = True
    return build_retriever(config.student, config.backbone, **options)


def train_art(
    questions: Mapping[str, str],
    corpus: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    config: ARTConfig | None = None,
    *,
    teacher: Any = None,
    retriever: Any = None,
    dataset_name: str = "corpus",
    resume: bool = True,
    show_progress_bar: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train an ART retriever on unpaired ``questions`` over ``corpus``; returns the saved folder.

    ``teacher`` (default: :class:`QuestionReconstructionTeacher` of ``config.teacher``) is any
    :class:`~.teacher.RelevanceTeacher` (e.g. :class:`~.oracle.QrelsOracleTeacher`); its
    ``describe()`` is the record's ``teacher``. ``retriever`` defaults to :func:`build_student`.
    ``on_step`` receives, after each step, ``{"step", "loss", "question_ids", "passage_ids",
    "index_step"}`` (what was retrieved from which index).
    """
    config = config or ARTConfig()
    output = Path(output_dir)
    if len(questions) < 1 or len(corpus) < config.top_k:
        raise DatasetError(
            f"ART needs questions and at least top_k={config.top_k} passages; got {len(questions)} "
            f"questions, {len(corpus)} passages"
        )
    identity = {k: getattr(config, k) for k in _IDENTITY}
    identity["learning_rate"] = config.learning_rate_for_student()
    # a finished folder is returned only when it was trained as asked, on the same questions (its
    # record names the teacher that scored the pairs, not config.teacher, when one was passed in)
    wanted = {"dataset": dataset_name, "questions": len(questions), **identity}
    if teacher is not None:
        wanted["teacher"] = teacher_record(teacher)["name"]
    if config.student_temperature is None:  # the record holds the one the geometry gave (backbone, normalize)
        del wanted["student_temperature"]
    if resume and finished_run(output, wanted, lambda saved: saved.get("training") or {}):
        logger.info("%s already holds the finished retriever", output)
        return output
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    retriever = retriever or build_student(config)
    retriever.to(device)
    teacher = teacher or QuestionReconstructionTeacher(
        config.teacher, device=str(device), batch_size=config.teacher_batch_size, dtype=config.teacher_dtype
    )
    cache = TeacherCache(teacher, questions, corpus)
    doc_ids = list(corpus)
    passages = [passage_text(corpus[d]) for d in doc_ids]
    question_ids = list(questions)

    from transformers import get_linear_schedule_with_warmup

    from ...losses import ARTDistillKLLoss

    parameters = retriever.trainable_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate_for_student())
    steps_per_epoch = math.ceil(len(question_ids) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    temperature = student_temperature(config, retriever)
    loss_fn = ARTDistillKLLoss(retriever.module, hidden_size=retriever.embedding_dim, temperature=temperature)

    # carried: seconds the interrupted run had spent in the epoch it resumes (epoch_seconds covers both)
    step, index, index_step, epoch_seconds, carried, initial_spread = 0, None, None, [], 0.0, None
    uninformative = 0  # questions left out because their teacher scores all tied
    checkpoint = resume_checkpoint(output, identity) if resume else None
    if checkpoint is not None:
        retriever.load_trainable_state_dict(checkpoint.trainable, where=str(checkpoint.path))
        optimizer.load_state_dict(checkpoint.optimizer_state["optimizer"])
        scheduler.load_state_dict(checkpoint.optimizer_state["scheduler"])
        set_rng_state(checkpoint.optimizer_state.get("rng", {}))
        index = checkpoint.optimizer_state["index"].to(device)
        cache.load_state(checkpoint.optimizer_state["cache"])
        step, index_step = checkpoint.step, int(checkpoint.state["index_step"])
        epoch_seconds = list(checkpoint.state.get("epoch_seconds", []))
        carried = float(checkpoint.state.get("epoch_elapsed", 0.0))
        initial_spread = checkpoint.state.get("initial_logit_spread")
        uninformative = int(checkpoint.state.get("uninformative_questions", 0))
        logger.info("Resuming ART at step %d (passage index from step %d)", step, index_step)

    def rebuild_index() -> torch.Tensor:
        return retriever.encode(
            passages, side=PASSAGE, batch_size=config.encode_batch_size, convert_to_tensor=True,
            show_progress_bar=False,
        ).to(device)  # fmt: skip

    def save(at_step: int) -> None:
        save_checkpoint(
            output,
            at_step,
            retriever.trainable_state_dict(),
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "index": index.detach().cpu(),
                "cache": cache.state(),
            },
            {
                "index_step": index_step,
                "epoch_seconds": epoch_seconds,
                "epoch_elapsed": time.perf_counter() - started,
                "initial_logit_spread": initial_spread,
                "uninformative_questions": uninformative,
                "run": identity,
            },
            keep=config.keep_checkpoints,
        )

    progress = tqdm(
        total=total_steps, initial=step, desc=f"ART {config.student}", disable=not show_progress_bar
    )
    retriever.module.train()
    started = time.perf_counter() - carried
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        order = list(question_ids)
        random.Random(config.seed + epoch).shuffle(order)  # each epoch's order: a function of (seed, epoch)
        batch_ids = order[position * config.batch_size : (position + 1) * config.batch_size]
        if index is None or (step % config.refresh_every == 0 and index_step != step):
            index, index_step = rebuild_index(), step
            logger.info("Rebuilt the passage index at step %d", step)
        with torch.no_grad():
            q = retriever.encode([questions[q] for q in batch_ids], side=QUERY, convert_to_tensor=True).to(
                device
            )
            values, top = (q @ index.T).topk(config.top_k, dim=1)
            top = top.cpu().tolist()
        if initial_spread is None:
            initial_spread = logit_spread(values / temperature)
            logger.info(
                "Student logits over the top-%d at the start (dot / %.3g): spread %.3f, top probability "
                "%.3f (uniform: %.3f)", config.top_k, temperature, initial_spread["spread"],
                initial_spread["top_probability"], 1 / config.top_k,
            )  # fmt: skip
        retrieved = [[doc_ids[i] for i in row] for row in top]
        teacher_scores = cache.get(batch_ids, retrieved)
        # A question whose teacher scores its K passages all alike carries no relevance signal, and KL
        # toward a uniform teacher would only flatten the student: such rows are left out. An LM teacher
        # never ties; the qrels oracle does when no judged passage was retrieved.
        informative = [row for row, scores in enumerate(teacher_scores) if scores.max() - scores.min() > TIED]
        uninformative += len(batch_ids) - len(informative)
        value = float("nan")
        if informative:
            features = [
                retriever.tokenize([questions[batch_ids[row]] for row in informative]),
                retriever.tokenize([passages[i] for row in informative for i in top[row]]),
            ]
            loss = loss_fn(features, teacher_scores[informative])
            loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            value = float(loss.detach())
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{value:.4f}", scored=cache.scored_pairs)
        if on_step is not None:
            on_step({"step": step, "loss": value, "question_ids": batch_ids, "passage_ids": retrieved,
                     "index_step": index_step})  # fmt: skip
        if step % steps_per_epoch == 0:
            epoch_seconds.append(round(time.perf_counter() - started, 2))
            started = time.perf_counter()
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
            save(step)
    progress.close()
    retriever.module.eval()
    described = teacher_record(teacher)
    record = {
        "method": "art",
        "dataset": dataset_name,
        "questions": len(question_ids),
        **config.to_dict(),
        # the teacher that actually scored the pairs (config.teacher names only the default one)
        "teacher": described["name"],
        "teacher_kind": described["kind"],
        "teacher_details": described,
        "student_temperature": temperature,
        "initial_logit_spread": initial_spread,
        "uninformative_questions": uninformative,
        "learning_rate": config.learning_rate_for_student(),
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "teacher_pairs_scored": len(cache.scores),
        "epoch_seconds": epoch_seconds,
    }
    save_retriever(retriever, output, training=record)
    shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
    return output


def logit_spread(logits: torch.Tensor) -> dict[str, float]:
    """How far from uniform the student's softmax over each question's K passages is.

    ``logits``: ``(questions, K)``, the scaled student scores sorted best first. Returns the means
    over questions of ``logits[:, 0] - logits[:, -1]`` (``spread``) and of the largest softmax
    probability (``top_probability``; ``1 / K`` for a uniform student).
    """
    logits = logits.detach().float().cpu()
    return {
        "spread": round(float((logits[:, 0] - logits[:, -1]).mean()), 4),
        "top_probability": round(float(torch.softmax(logits, dim=1).max(dim=1).values.mean()), 4),
    }


def student_temperature(config: ARTConfig, retriever: Any) -> float:
    """What the student's dot products are divided by: ``config.student_temperature`` when set, else
    :data:`COSINE_TEMPERATURE` when the student's embeddings are unit vectors (its pipeline ends in
    ``Normalize``) and ``sqrt(hidden size)`` (the authors' code, for BERT's raw [CLS] vectors) when not.

    sqrt(384) on all-MiniLM-L6-v2's unit vectors would make the student's softmax over the top-K
    uniform to three decimals (docs/art.md, "The student's scale").
    """
    from ...encoders.backbone import normalizes

    if config.student_temperature is not None:
        return float(config.student_temperature)
    if normalizes(retriever.model):
        return COSINE_TEMPERATURE
    return math.sqrt(retriever.embedding_dim)
