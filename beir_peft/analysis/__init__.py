"""Analyses of saved runs (Tam et al. 2022, section 7): calibration (ECE) and query-length robustness.

``calibration(qrels, run)`` and ``plot_reliability(results, path)`` are in :mod:`.calibration`,
``query_length_analysis(queries, qrels, runs)`` and ``plot_query_length(result, path)`` in
:mod:`.query_length`, ``read_run_file(path)`` (TREC runs) in :mod:`.runs`. Plots need matplotlib
(``pip install "beir-peft[plots]"``), imported only when a plot is drawn.
"""

from .calibration import CalibrationResult, calibration, format_calibration_table, plot_reliability
from .query_length import QueryLengthResult, plot_query_length, query_length_analysis
from .runs import read_run_file

__all__ = [
    "CalibrationResult",
    "QueryLengthResult",
    "calibration",
    "format_calibration_table",
    "plot_query_length",
    "plot_reliability",
    "query_length_analysis",
    "read_run_file",
]
