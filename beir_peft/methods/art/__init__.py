"""ART: Autoencoding-based Retriever Training from questions alone (Sachan et al. 2023, seed 003).

:func:`train_art` (:mod:`.training`) trains a dual encoder with :class:`ARTConfig`; the teacher is
:class:`QuestionReconstructionTeacher` (:mod:`.teacher`), its scores cached per pair in
:class:`TeacherCache`; the loss is :class:`beir_peft.losses.ARTDistillKLLoss`.
"""

from .teacher import DEFAULT_TEACHER, QuestionReconstructionTeacher, TeacherCache
from .training import ARTConfig, build_student, train_art

__all__ = [
    "DEFAULT_TEACHER",
    "ARTConfig",
    "QuestionReconstructionTeacher",
    "TeacherCache",
    "build_student",
    "train_art",
]
