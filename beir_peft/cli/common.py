"""What every command does around its work: messages on stderr, quiet libraries, given options."""

from __future__ import annotations

import os

import click


def is_main_process() -> bool:
    """Whether this is the process that speaks: the only one, or rank 0 of a ``torchrun`` /
    ``accelerate launch`` group (their ``RANK``)."""
    return os.environ.get("RANK", "0") == "0"


def echo(message: str) -> None:
    """A progress or result line on stderr (stdout holds only tables); rank 0 only."""
    if is_main_process():
        click.echo(message, err=True)


def quiet_libraries() -> None:
    """No weight-loading progress bars from transformers under ``--quiet``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or through the environment)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def describe(retriever) -> str:
    """A retriever's own ``describe()``, else its model name or class."""
    describe = getattr(retriever, "describe", None)
    return describe() if callable(describe) else getattr(retriever, "name_or_path", type(retriever).__name__)
