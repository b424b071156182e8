"""User-facing errors.

Everything raised as :class:`BeirPeftError` is a mistake in the user's input (a dataset that does
not exist, a malformed line, a model folder for another backbone, ...). The CLI prints such errors
as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BeirPeftError(Exception):
    """Base class of every error caused by user input rather than by a bug."""


class DatasetError(BeirPeftError):
    """A dataset cannot be found, downloaded or parsed, or is inconsistent."""


class ArtifactError(BeirPeftError):
    """A saved retriever folder is missing, malformed, or does not fit its backbone."""


class ConfigError(BeirPeftError):
    """An option or combination of options is invalid."""


class OutputError(BeirPeftError, OSError):
    """An output path cannot be written (a folder that is a file, no permission, a read-only disk).

    Also an :class:`OSError`, so code that catches failed writes as ``OSError`` still catches it.
    """
