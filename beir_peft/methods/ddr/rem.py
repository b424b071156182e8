"""DDR's relevance estimation module (REM): trained once, on a frozen source DAM.

Zhan et al. 2022 (DDR, seed 004), section 3.2 and 4: the REM is LoRA on every attention layer's
query and value projections plus a parallel adapter beside every feed-forward block (r = 192 and
bottleneck 192 in the authors' code; 9.7% of BERT-base's parameters), the rest of the model frozen;
trained contrastively with hard negatives (or by MarginMSE distillation when teacher scores are
given), mean pooling, inner product, lr 2e-5. Table 5 compares LoRA only, the adapter only, both
(``rem_lora`` / ``rem_adapter``).

:func:`train_rem` returns a saved retriever folder (method ``ddr``) whose backbone is the source
DAM: evaluating it gives "REM on the source DAM" (no target DAM). :func:`assemble` puts the same REM
on a target DAM, with LoRA merged into the weights when loaded (zero inference overhead).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

from ...artifacts import read_config, save_retriever
from ...data import BeirDataset, passage_text
from ...errors import DatasetError
from ...training.config import TrainingConfig
from ...training.pairs import fit, pair_run_folder
from ..supervised import train

logger = logging.getLogger(__name__)

#: the REM's pooling and score (the paper: mean pooling, inner product)
REM_POOLING = "mean"


def build_rem(dam: str, **options: Any):
    """An untrained REM (method ``ddr``) on the frozen ``dam``; ``options`` are TunedConfig fields."""
    from ...models.tuned import build_retriever

    options.setdefault("pooling", REM_POOLING)
    return build_retriever("ddr", dam, **options)


def train_rem(
    dam: str,
    dataset: BeirDataset,
    output: str | os.PathLike,
    config: TrainingConfig | None = None,
    margins_file: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    **options: Any,
) -> Path:
    """Train a REM on ``dataset`` over the frozen ``dam``; returns the saved ``ddr`` folder.

    Contrastive (DPR's in-batch loss plus ``config.hard_negatives`` mined by the DAM) by default;
    with ``margins_file`` (``qid, pos, neg, margin`` rows, e.g. GPL's ``training_data.tsv``) MarginMSE.
    """
    config = config or TrainingConfig(hard_negatives=1, backbone_dropout=True)
    retriever = build_rem(dam, **options)
    if margins_file is None:
        return train(retriever, dataset, output, config, resume=resume, overwrite=overwrite,
                     show_progress_bar=show_progress_bar)  # fmt: skip
    from ...losses import DualEncoderMarginMSELoss

    pair_run_folder(output).check(resume, overwrite)
    rows = _margin_rows(Path(margins_file), dataset)
    texts = {
        "query": dataset.queries.__getitem__,
        "positive": lambda d: passage_text(dataset.corpus[d]),
        "negative": lambda d: passage_text(dataset.corpus[d]),
    }
    return fit(retriever, rows, output, config, {"dataset": dataset.name, "split": dataset.split, "margins": str(margins_file)},
               make_loss=lambda module: DualEncoderMarginMSELoss(module), no_duplicates=False, texts_of=texts,
               resume=resume, show_progress_bar=show_progress_bar)  # fmt: skip


def _margin_rows(path: Path, dataset: BeirDataset) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"missing margins file {path}")
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for lineno, fields in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if lineno == 1 and fields and fields[0] == "qid":
                continue
            if len(fields) != 4:
                raise DatasetError(f"{path} line {lineno}: expected qid, pos, neg, margin (tab-separated)")
            qid, pos, neg, margin = fields
            if qid not in dataset.queries:
                raise DatasetError(f"{path} line {lineno}: unknown query id {qid!r}")
            for doc in (pos, neg):
                if doc not in dataset.corpus:
                    raise DatasetError(f"{path} line {lineno}: unknown document id {doc!r}")
            try:
                value = float(margin)
            except ValueError:
                raise DatasetError(f"{path} line {lineno}: margin {margin!r} is not a number") from None
            rows.append({"query": qid, "positive": pos, "negative": neg, "label": value})
    if not rows:
        raise DatasetError(f"{path} holds no rows")
    return rows


def assemble(dam: str | os.PathLike, rem: str | os.PathLike, output: str | os.PathLike) -> Path:
    """The REM of folder ``rem`` on the target ``dam``: a saved retriever that merges LoRA when loaded.

    The output stores only the REM's tensors (the same bytes for every domain) and names ``dam``
    as its backbone. A REM that does not fit ``dam`` (another architecture or size) is refused.
    """
    from ...models.ddr import DDR

    rem, dam = Path(rem), Path(dam)
    retriever = DDR(dam, rem=rem, merge=False)
    retriever.config.merge_lora = True
    saved = read_config(rem)
    record = {"method": "ddr-assemble", "rem": str(rem), "dam": str(dam), "source_dam": saved.get("backbone"),
              "rem_training": saved.get("training")}  # fmt: skip
    return save_retriever(retriever, output, training=record)
