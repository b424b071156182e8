"""ART: Autoencoding-based Retriever Training from questions alone (Sachan et al. 2023, seed 003).

:func:`train_art` (:mod:`.training`) trains a dual encoder with :class:`ARTConfig`; the teacher is
any :class:`RelevanceTeacher` (:mod:`.teacher`): the paper's :class:`QuestionReconstructionTeacher`,
or :class:`QrelsOracleTeacher` (:mod:`.oracle`, relevance judgements as teacher, a controlled check);
its scores are cached per pair in :class:`TeacherCache`; the loss is
:class:`beir_peft.losses.ARTDistillKLLoss`.
"""

from .oracle import QrelsOracleTeacher
from .teacher import (
    DEFAULT_TEACHER,
    QuestionReconstructionTeacher,
    RelevanceTeacher,
    TeacherCache,
    teacher_record,
)
from .training import ARTConfig, build_student, train_art

__all__ = [
    "DEFAULT_TEACHER",
    "ARTConfig",
    "QrelsOracleTeacher",
    "QuestionReconstructionTeacher",
    "RelevanceTeacher",
    "TeacherCache",
    "build_student",
    "teacher_record",
    "train_art",
]
