"""Reading TREC run files, as :func:`beir_peft.evaluation.write_run_file` writes them.

A run file has one ``qid Q0 docid rank score run_name`` line per retrieved document (whitespace
separated; the second column is conventionally ``Q0`` and is not checked, as trec_eval ignores it).
Scores, not ranks, are what counts, as for trec_eval; the rank must still be an integer. Blank
lines are skipped. Every problem is a :class:`~beir_peft.errors.DatasetError` with a one-line
message naming the file and, where one applies, the line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import DatasetError

Run = dict[str, dict[str, float]]

COLUMNS = "qid Q0 docid rank score run-name"


def read_run_file(path: str | os.PathLike) -> Run:
    """Read a TREC run into ``{qid: {docid: score}}`` (queries and documents in file order).

    Raises :class:`DatasetError` for a missing or non-UTF-8 file, a file with no run lines, a line
    without exactly six columns, a rank that is not an integer, a score that is not a finite number,
    and a document listed twice for one query.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"missing run file {path}" if not path.exists() else f"run file {path} is not a file"
        )
    run: Run = {}
    first_line: dict[tuple[str, str], int] = {}
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for lineno, raw in enumerate(handle, 1):
                parts = raw.split()
                if not parts:
                    continue
                if len(parts) != 6:
                    raise DatasetError(
                        f"{path} line {lineno}: expected 6 columns ({COLUMNS}), got {len(parts)}"
                    )
                qid, _q0, doc_id, rank, score, _name = parts
                try:
                    int(rank)
                except ValueError:
                    raise DatasetError(f"{path} line {lineno}: rank {rank!r} is not an integer") from None
                try:
                    value = float(score)
                except ValueError:
                    raise DatasetError(f"{path} line {lineno}: score {score!r} is not a number") from None
                if not math.isfinite(value):
                    raise DatasetError(f"{path} line {lineno}: score {score!r} is not a finite number")
                key = (qid, doc_id)
                if key in first_line:
                    raise DatasetError(
                        f"{path} line {lineno}: document {doc_id!r} listed twice for query {qid!r} "
                        f"(first on line {first_line[key]})"
                    )
                first_line[key] = lineno
                run.setdefault(qid, {})[doc_id] = value
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not run:
        raise DatasetError(f"{path} holds no run lines ({COLUMNS})")
    return run
