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

On ``N`` processes (``torchrun`` / ``accelerate launch``) ``batch_size`` is per process: every
process retrieves for the whole global batch of ``N x batch_size`` questions (cheap, no gradients),
then scores with the teacher and trains on its own contiguous share; each share's loss is weighted
so that the gradient DistributedDataParallel averages is that of one process with the global batch
(the KL is a mean over the informative questions of the global batch). The passage index is
encoded in shards across the processes, and the teacher caches are merged before every checkpoint.

``held_out_questions`` (default 200, at most a tenth) are kept out of training; at the end the
untrained student and the trained one are compared on them, the teacher's choice among what both
retrieve as the relevant passage (:mod:`.held_out`), and the folder records both scores with a
one-line warning when the trained one is not better (docs/art.md, "The adaptation check").
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...artifacts import save_retriever
from ...data import passage_text
from ...encoders.backbone import DEFAULT_BACKBONE
from ...errors import ConfigError, DatasetError
from ...models.base import PASSAGE, QUERY
from ...registry import student_methods
from ...training.adaptation_check import held_out_sample, recorded_check, run_check
from ...training.config import learning_rate_for
from ...training.loop import (
    TORCH_ADAMW_WEIGHT_DECAY,
    LoopResult,
    LoopSettings,
    ShuffledBatches,
    TrainingStep,
    run_loop,
)
from ...training.processes import new_accelerator
from ...training.run_folder import RunFolder, one_process_unless_said, training_record
from .teacher import DEFAULT_TEACHER, QuestionReconstructionTeacher, TeacherCache, teacher_record

logger = logging.getLogger(__name__)

STUDENTS = student_methods()
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
    # questions kept out of training for the adaptation check (at most a tenth; 0: no check)
    held_out_questions: int = 200

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
        if self.held_out_questions < 0:
            raise ConfigError(f"held_out_questions must be >= 0, got {self.held_out_questions}")

    def learning_rate_for_student(self) -> float:
        """The learning rate, by default the package's for the student (``ft``: 2e-5, the paper's)."""
        return learning_rate_for(self.student, self.learning_rate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: settings a resumed run must share with the interrupted one
_IDENTITY = ("student", "backbone", "pooling", "normalize", "student_temperature", "max_seq_length", "teacher",
             "top_k", "refresh_every", "batch_size", "learning_rate", "epochs", "max_steps", "seed",
             "held_out_questions")  # fmt: skip


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
    overwrite: bool = False,
    show_progress_bar: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Train an ART retriever on unpaired ``questions`` over ``corpus``; returns the saved folder.

    ``teacher`` (default: :class:`QuestionReconstructionTeacher` of ``config.teacher``) is any
    :class:`~.teacher.RelevanceTeacher` (e.g. :class:`~.oracle.QrelsOracleTeacher`); its
    ``describe()`` is the record's ``teacher``. ``retriever`` defaults to :func:`build_student`.
    ``resume`` (the default) continues the run in ``output_dir``; ``overwrite`` starts afresh.
    ``on_step`` receives, after each step, ``{"step", "loss", "question_ids", "passage_ids",
    "index_step"}`` (what was retrieved from which index). ``config.held_out_questions`` of the
    questions (drawn with the seed) are not trained on but scored by the adaptation check at the end,
    whose line goes to ``echo`` (default: the log; a warning when the trained model is not better).
    """
    config = config or ARTConfig()
    folder = RunFolder(Path(output_dir), trained_with=_trained_with)
    folder.check(resume=resume and not overwrite, overwrite=overwrite)
    accelerator = new_accelerator(device_placement=False)
    if overwrite and accelerator.is_main_process:
        folder.clear()
    accelerator.wait_for_everyone()
    held_out = set(held_out_sample(list(questions), config.held_out_questions, config.seed))
    held_out_texts = {q: text for q, text in questions.items() if q in held_out}
    questions = {q: text for q, text in questions.items() if q not in held_out}
    if len(questions) < 1 or len(corpus) < config.top_k:
        raise DatasetError(
            f"ART needs questions and at least top_k={config.top_k} passages; got {len(questions)} "
            f"questions, {len(corpus)} passages"
        )
    identity = {k: getattr(config, k) for k in _IDENTITY}
    identity["learning_rate"] = config.learning_rate_for_student()
    identity["world_size"] = accelerator.num_processes
    # a finished folder is returned only when it was trained as asked, on the same questions (its
    # record names the teacher that scored the pairs, not config.teacher, when one was passed in)
    wanted = {"dataset": dataset_name, "questions": len(questions), **identity}
    if teacher is not None:
        wanted["teacher"] = teacher_record(teacher)["name"]
    if config.student_temperature is None:  # the record holds the one the geometry gave (backbone, normalize)
        del wanted["student_temperature"]
    device = torch.device(config.device) if config.device else accelerator.device

    @functools.cache
    def the_teacher():
        """The given teacher, or the default one loaded once (for training, then for the check)."""
        return teacher or QuestionReconstructionTeacher(
            config.teacher,
            device=str(device),
            batch_size=config.teacher_batch_size,
            dtype=config.teacher_dtype,
        )

    def check(start: Callable[[], Any]):
        _check_adapted(folder.output, held_out_texts, corpus, start, the_teacher, config, device, accelerator,
                       echo)  # fmt: skip
        return folder.output

    if resume and folder.finished(wanted):
        return check(lambda: retriever or build_student(config))
    torch.manual_seed(config.seed)
    # the start of the check: a passed-in retriever as it is now, before training moves it
    if retriever is None or not held_out:
        start = lambda: build_student(config)  # noqa: E731
    else:
        untrained = copy.deepcopy(retriever)
        start = lambda: untrained  # noqa: E731
    retriever = retriever or build_student(config)
    retriever.to(device)
    scorer = the_teacher()
    step = _ARTStep(retriever, questions, corpus, TeacherCache(scorer, questions, corpus), scorer, config,
                    folder.output, dataset_name, device, on_step, accelerator)  # fmt: skip
    question_ids = list(questions)
    global_batch = config.batch_size * accelerator.num_processes
    batches = ShuffledBatches(
        lambda epoch: _shuffled(question_ids, config.seed + epoch),
        global_batch,
        math.ceil(len(question_ids) / global_batch),
    )
    settings = LoopSettings(
        learning_rate=config.learning_rate_for_student(),
        epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_ratio=config.warmup_ratio,
        weight_decay=TORCH_ADAMW_WEIGHT_DECAY,
        max_grad_norm=config.max_grad_norm,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
    )

    if accelerator.process_index:  # each process its own dropout (process 0: the seed's stream, as alone)
        torch.manual_seed(config.seed + accelerator.process_index)
    run_loop(step, batches, settings, folder, module=retriever.module, parameters=retriever.trainable_parameters(),
             identity=identity, normalize_identity=_older, accelerator=accelerator,
             resume=resume, desc=f"ART {config.student}", show_progress_bar=show_progress_bar)  # fmt: skip
    return check(start)


def _check_adapted(output: Path, held_out: Mapping[str, str], corpus, start, make_teacher, config: ARTConfig,
                   device, accelerator, echo) -> None:  # fmt: skip
    """The adaptation check of a finished run (training/adaptation_check.py): ``start()`` (the
    untrained student) against the saved retriever on the ``held_out`` questions (none: no check),
    the teacher's choice among what both retrieve as each one's answer. On N processes every one
    encodes its share of the corpus for both models' retrieval; the main one alone runs the teacher,
    scores and records."""
    if not held_out:
        return
    from ...models.loading import load
    from .held_out import candidates, teacher_choice_signal

    needed = recorded_check(output) is None
    accelerator.wait_for_everyone()  # every process has looked before the main one writes
    models = (lambda: start().to(device), lambda: load(output, device=str(device)))
    if accelerator.is_main_process:

        def signal(start_model, adapted):
            return teacher_choice_signal(held_out, corpus, (start_model, adapted), make_teacher(), top_k=config.top_k,
                                         tied=TIED, batch_size=config.encode_batch_size)  # fmt: skip

        run_check(output, signal, *models, start_name=config.backbone, echo=echo)
    elif needed:  # the main process' retrieval is collective: this process encodes its share
        candidates(held_out, corpus, [make() for make in models], top_k=config.top_k,
                   batch_size=config.encode_batch_size)  # fmt: skip
    accelerator.wait_for_everyone()


def _trained_with(output: Path) -> dict[str, Any]:
    """A finished folder's record (:func:`_older` for one written before it said everything)."""
    return _older(training_record(output))


def _older(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A record or checkpoint identity from before ART split its batches (one process) or held
    questions out (every question trained on)."""
    return {"held_out_questions": 0, **one_process_unless_said(saved)}


def _shuffled(ids: list[str], seed: int) -> list[str]:
    """``ids`` in the order of epoch seed ``seed`` (a function of the seed and the epoch only)."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    return order


class _ARTStep(TrainingStep):
    """One ART step: retrieve the top-K for a batch of questions from the (periodically rebuilt)
    passage index, score them with the teacher (cached), KL toward the teacher."""

    def __init__(self, retriever, questions, corpus, cache, teacher, config: ARTConfig, output: Path,
                 dataset_name: str, device, on_step, accelerator):  # fmt: skip
        self.retriever, self.questions, self.cache, self.teacher = retriever, questions, cache, teacher
        self.config, self.output, self.dataset_name, self.device, self.on_step = (
            config,
            output,
            dataset_name,
            device,
            on_step,
        )
        self.accelerator = accelerator
        self.doc_ids = list(corpus)
        self.passages = [passage_text(corpus[d]) for d in self.doc_ids]
        self.temperature = student_temperature(config, retriever)
        self.index, self.index_step, self.initial_spread, self.last = None, None, None, {}
        self.uninformative = 0  # questions left out because their teacher scores all tied

    def bind(self, module):
        from ...losses import ARTDistillKLLoss

        self.loss_fn = ARTDistillKLLoss(
            module, hidden_size=self.retriever.embedding_dim, temperature=self.temperature
        )

    def loss(self, batch_ids, step):
        config, retriever = self.config, self.retriever
        if self.index is None or (step % config.refresh_every == 0 and self.index_step != step):
            self.index = self._encode_passages()
            self.index_step = step
            logger.info("Rebuilt the passage index at step %d", step)
        with torch.no_grad():
            q = retriever.encode([self.questions[q] for q in batch_ids], side=QUERY, convert_to_tensor=True)
            values, top = (q.to(self.device) @ self.index.T).topk(config.top_k, dim=1)
            top = top.cpu().tolist()
        if self.initial_spread is None:
            self.initial_spread = logit_spread(values / self.temperature)
            logger.info(
                "Student logits over the top-%d at the start (dot / %.3g): spread %.3f, top probability "
                "%.3f (uniform: %.3f)", config.top_k, self.temperature, self.initial_spread["spread"],
                self.initial_spread["top_probability"], 1 / config.top_k,
            )  # fmt: skip
        retrieved = [[self.doc_ids[i] for i in row] for row in top]
        self.last = {"question_ids": batch_ids, "passage_ids": retrieved, "index_step": self.index_step}
        rows = self._my_rows(len(batch_ids))
        teacher_scores = self.cache.get([batch_ids[r] for r in rows], [retrieved[r] for r in rows])
        # A question whose teacher scores its K passages all alike carries no relevance signal, and KL
        # toward a uniform teacher would only flatten the student: such rows are left out. An LM teacher
        # never ties; the qrels oracle does when no judged passage was retrieved.
        keep = [i for i, scores in enumerate(teacher_scores) if scores.max() - scores.min() > TIED]
        informative, uninformative = self._summed(len(keep), len(rows) - len(keep))
        self.uninformative += uninformative
        if not informative:  # on every process alike: the optimizer does not step
            return None
        # a process with nothing to learn from still runs the forward (DistributedDataParallel's
        # gradient reduction needs every process), on one row, weighted 0
        weight = len(keep) * self.accelerator.num_processes / informative
        if not keep:
            chosen, labels = [0], torch.zeros(1, config.top_k)
        else:
            chosen, labels = [rows[i] for i in keep], teacher_scores[keep]
        features = [
            retriever.tokenize([self.questions[batch_ids[row]] for row in chosen]),
            retriever.tokenize([self.passages[i] for row in chosen for i in top[row]]),
        ]
        loss = self.loss_fn(features, labels)
        return loss if weight == 1 else loss * weight

    def _my_rows(self, batch: int) -> range:
        """This process's contiguous share of a global batch of ``batch`` questions."""
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per = math.ceil(batch / processes)
        return range(min(rank * per, batch), min((rank + 1) * per, batch))

    def _summed(self, *counts: int) -> list[int]:
        """``counts`` summed over the processes."""
        if self.accelerator.num_processes == 1:
            return list(counts)
        summed = self.accelerator.reduce(torch.tensor(counts, device=self.device), "sum")
        return [int(c) for c in summed.tolist()]

    def _encode_passages(self) -> torch.Tensor:
        """The passage index, ``(passages, dim)`` on ``self.device``. On ``N`` processes each
        encodes a contiguous ``1/N`` of the passages and the shards are gathered in rank order
        (padded to one length for the gather, then trimmed)."""
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per = math.ceil(len(self.passages) / processes)
        shards = [self.passages[r * per : (r + 1) * per] for r in range(processes)]
        mine = torch.zeros(0, self.retriever.embedding_dim, device=self.device)
        if shards[rank]:
            mine = self.retriever.encode(
                shards[rank], side=PASSAGE, batch_size=self.config.encode_batch_size, convert_to_tensor=True,
                show_progress_bar=False,
            ).to(self.device)  # fmt: skip
        if processes == 1:
            return mine
        gathered = self.accelerator.gather(self.accelerator.pad_across_processes(mine, dim=0))
        gathered = gathered.view(processes, per, -1)
        return torch.cat([gathered[r, : len(shard)] for r, shard in enumerate(shards)])

    def after_step(self, step, loss):
        if self.on_step is not None:
            self.on_step({"step": step, "loss": loss, **self.last})

    def progress(self):
        return {"scored": self.cache.scored_pairs}

    def synchronize(self):
        """Every process's cache gets the pairs the others scored since the last call."""
        if self.accelerator.num_processes == 1:
            return
        from accelerate.utils import gather_object

        for scores in gather_object([self.cache.take_new()]):
            self.cache.merge(scores)

    def trainable_state(self):
        return self.retriever.trainable_state_dict()

    def load_trainable_state(self, state, where):
        self.retriever.load_trainable_state_dict(state, where=where)

    def checkpoint_extras(self):
        tensors = {"index": self.index.detach().cpu(), "cache": self.cache.state()}
        return tensors, {"index_step": self.index_step, "initial_logit_spread": self.initial_spread,
                         "uninformative_questions": self.uninformative}  # fmt: skip

    def load_checkpoint_extras(self, saved, state):
        self.index = saved["index"].to(self.device)
        self.cache.load_state(saved["cache"])
        self.index_step = int(state["index_step"])
        self.initial_spread = state.get("initial_logit_spread")
        self.uninformative = int(state.get("uninformative_questions", 0))
        logger.info("ART's passage index from step %d", self.index_step)

    def save(self, result: LoopResult):
        described = teacher_record(self.teacher)
        record = {
            "method": "art",
            "dataset": self.dataset_name,
            "questions": len(self.questions),
            **self.config.to_dict(),
            # the teacher that actually scored the pairs (config.teacher names only the default one)
            "teacher": described["name"],
            "teacher_kind": described["kind"],
            "teacher_details": described,
            "student_temperature": self.temperature,
            "initial_logit_spread": self.initial_spread,
            "uninformative_questions": self.uninformative,
            "learning_rate": self.config.learning_rate_for_student(),
            "steps": result.steps,
            "steps_per_epoch": result.steps_per_epoch,
            "world_size": result.processes,
            "first_loss": result.first_loss,
            "last_loss": result.last_loss,
            "teacher_pairs_scored": len(self.cache.scores),
            # complete epochs only, as ART has always recorded them
            "epoch_seconds": result.epoch_seconds[: result.steps // result.steps_per_epoch],
        }
        save_retriever(self.retriever, self.output, training=record)


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
