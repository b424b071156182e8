"""The ``beir-peft`` command line: ``evaluate``, ``train``, ``adapt gpl | art``, ``ddr dam | rem |
assemble``, ``analyze calibration | query-length`` and ``compare``, one module per verb.

Every user error (a bad dataset, model folder or option) ends with one line on stderr and a
non-zero exit status (2 for usage and input errors); tracebacks are kept for bugs. Every output
(``--output``, ``--run-file``, ``--index-dir``, ``--plot``, ``--output-dir``) is checked before any
work starts; a write that still fails (a full disk, a folder made read-only meanwhile) is one line
naming the path too (exit 2 from the package's writers, 1 for any other ``OSError``).

Options several commands share are defined once in :mod:`beir_peft.cli.options`, their defaults
read from the config dataclasses; method and search choices come from :mod:`beir_peft.registry`.
"""

from __future__ import annotations

from .app import cli, main
from .evaluate import NEXT_DATASETS

__all__ = ["NEXT_DATASETS", "cli", "main"]
