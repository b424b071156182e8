"""ART's teacher: how likely a frozen seq2seq language model finds the question given a passage.

Sachan et al. 2023 (ART, seed 003), section 2.2: the relevance of passage ``z`` to question ``q``
is the question's log-likelihood under a frozen pre-trained language model conditioned on the
passage, ``log p(q | z)`` by teacher forcing, averaged over the question's tokens; T0-3B in the
paper. The authors' code [code] writes the passage as ``"Passage: {title} {text} . Please write a
question based on this passage."`` and the target as ``"Question: {q}"``; both are the defaults.

:class:`QuestionReconstructionTeacher` scores (question, passage) pairs in batches of its own size,
in bfloat16 on GPUs that support it; :class:`TeacherCache` remembers every pair it has scored, so
no pair is scored twice in a run (and, saved with the checkpoints, not after a resume either).

:class:`RelevanceTeacher` is what the training loop needs from any teacher: ``score`` over
(question, passage) texts on a log-likelihood-like scale, and ``describe`` for the saved record.
:class:`QuestionReconstructionTeacher` is the paper's implementation; the qrels oracle of
:mod:`.oracle` is another (a controlled check that the training signal reaches the student).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from ...data import passage_text
from ...errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "bigscience/T0_3B"
PASSAGE_TEMPLATE = "Passage: {passage} . Please write a question based on this passage."
QUESTION_TEMPLATE = "Question: {question}"


@runtime_checkable
class RelevanceTeacher(Protocol):
    """A teacher for ART: how relevant each passage is to its question, on a log-likelihood scale.

    ``score(questions, passages)`` gets two equally long lists of texts (the question, and the
    passage as :func:`beir_peft.models.base.passage_text` writes it: title and text) and returns
    one float per pair. ART's loss takes the softmax of a question's K scores (teacher temperature
    1), so the scale matters: a difference of ``d`` between two passages means a probability ratio
    of ``exp(d)``, as between two question log-likelihoods.

    ``describe()`` returns a JSON-ready dict with at least ``kind`` (e.g. ``"question-likelihood"``,
    ``"oracle"``, ``"anti-oracle"``) and ``name``; it goes into the saved folder's training record,
    so a folder says which teacher trained it.
    """

    def score(self, questions: Sequence[str], passages: Sequence[str]) -> list[float]: ...

    def describe(self) -> dict[str, Any]: ...


def teacher_record(teacher: Any) -> dict[str, Any]:
    """``teacher.describe()``, or for a teacher without one ``{"kind": "custom", "name": its class}``."""
    describe = getattr(teacher, "describe", None)
    if callable(describe):
        record = dict(describe())
        record.setdefault("kind", "custom")
        record.setdefault("name", type(teacher).__qualname__)
        return record
    return {"kind": "custom", "name": f"{type(teacher).__module__}.{type(teacher).__qualname__}"}


class QuestionReconstructionTeacher:
    """Mean token log-likelihood of a question given a passage under a frozen seq2seq LM.

    Args:
        model_name_or_path: hub name or folder (``AutoModelForSeq2SeqLM``); default T0-3B.
        device: torch device (default: CUDA when available).
        batch_size: pairs per forward pass.
        dtype: ``"auto"`` (bfloat16 where the GPU supports it, else float32), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.
        max_passage_length, max_question_length: token limits of the two sides.

    A :class:`RelevanceTeacher`.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_TEACHER,
        device: str | None = None,
        batch_size: int = 16,
        dtype: str = "auto",
        max_passage_length: int = 512,
        max_question_length: int = 64,
    ):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.name = model_name_or_path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self.max_passage_length = max_passage_length
        self.max_question_length = max_question_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the teacher {model_name_or_path!r}: {err}") from err
        self.model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "question-likelihood",
            "name": self.name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_passage_length": self.max_passage_length,
            "max_question_length": self.max_question_length,
        }

    def encode_pairs(self, questions: Sequence[str], passages: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenised inputs (prompted passages) and labels (prompted questions, padding = -100)."""
        sources = [PASSAGE_TEMPLATE.format(passage=p) for p in passages]
        targets = [QUESTION_TEMPLATE.format(question=q) for q in questions]
        inputs = self.tokenizer(
            sources, padding=True, truncation=True, max_length=self.max_passage_length, return_tensors="pt"
        )
        labels = self.tokenizer(
            text_target=targets, padding=True, truncation=True, max_length=self.max_question_length,
            return_tensors="pt",
        )["input_ids"]  # fmt: skip
        labels[labels == self.tokenizer.pad_token_id] = -100
        return {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "labels": labels,
        }

    @torch.inference_mode()
    def score(self, questions: Sequence[str], passages: Sequence[str]) -> list[float]:
        """``mean_t log p(question_t | passage, question_<t)`` for each (question, passage) pair."""
        if len(questions) != len(passages):
            raise ConfigError("questions and passages must pair up")
        out: list[float] = []
        for start in range(0, len(questions), self.batch_size):
            batch = self.encode_pairs(
                questions[start : start + self.batch_size], passages[start : start + self.batch_size]
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = self.model(**batch).logits.float()
            labels = batch["labels"]
            mask = labels != -100
            log_probs = (
                torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            )
            out.extend(((log_probs * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist())
        return out


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in choices:
        raise ConfigError(f"dtype must be auto or one of {sorted(choices)}, got {name!r}")
    return choices[name]


class TeacherCache:
    """Teacher scores per (question id, passage id); only pairs never seen before are scored."""

    def __init__(self, teacher: Any, questions: Mapping[str, str], corpus: Mapping[str, Mapping[str, Any]]):
        self.teacher = teacher
        self.questions = questions
        self.corpus = corpus
        self.scores: dict[tuple[str, str], float] = {}
        self.scored_pairs = 0  # pairs sent to the teacher (for tests and logs)
        self._new: dict[tuple[str, str], float] = {}  # scored here since the last take_new()

    def get(self, question_ids: Sequence[str], passage_ids: Sequence[Sequence[str]]) -> torch.Tensor:
        """Scores ``(len(question_ids), K)`` for each question's K passages, scoring only new pairs."""
        wanted = [(q, p) for q, row in zip(question_ids, passage_ids, strict=True) for p in row]
        missing = list(dict.fromkeys(pair for pair in wanted if pair not in self.scores))
        if missing:
            values = self.teacher.score(
                [self.questions[q] for q, _ in missing], [passage_text(self.corpus[p]) for _, p in missing]
            )
            scored = dict(zip(missing, values, strict=True))
            self.scores.update(scored)
            self._new.update(scored)
            self.scored_pairs += len(missing)
        return torch.tensor(
            [[self.scores[(q, p)] for p in row] for q, row in zip(question_ids, passage_ids, strict=True)]
        )

    def state(self) -> dict[str, Any]:
        """Tensors and lists only (a checkpoint's ``torch.load(weights_only=True)`` reads them back)."""
        keys = list(self.scores)
        return {
            "questions": [q for q, _ in keys],
            "passages": [p for _, p in keys],
            "values": torch.tensor([self.scores[k] for k in keys], dtype=torch.float64),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        values = state["values"].tolist()
        self.scores = dict(zip(zip(state["questions"], state["passages"], strict=True), values, strict=True))

    def take_new(self) -> dict[tuple[str, str], float]:
        """The pairs this cache scored since the last call (what other processes lack)."""
        new, self._new = self._new, {}
        return new

    def merge(self, scores: Mapping[tuple[str, str], float]) -> None:
        """Add pairs another process scored (the teacher is deterministic: the same pair, the same score)."""
        self.scores.update(scores)
