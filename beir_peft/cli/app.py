"""The ``beir-peft`` group, one command per verb, and the entry point that turns user errors into one line."""

from __future__ import annotations

import logging
import os

import click

from ..errors import BeirPeftError
from .adapt import adapt
from .analyze import analyze
from .common import is_main_process, quiet_libraries
from .compare import compare
from .ddr import ddr
from .evaluate import evaluate
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="beir-peft")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(verbose: bool) -> None:
    """Parameter-efficient and domain-adapted dense retrievers, evaluated with BEIR."""
    # the other ranks of torchrun / accelerate launch log errors only
    level = (logging.INFO if verbose else logging.WARNING) if is_main_process() else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _command in (evaluate, train, analyze, compare, adapt, ddr):
    cli.add_command(_command)


def _os_error_line(exc: OSError) -> str:
    """``Permission denied: /a/b -> /a/c``: the reason and the path(s) an ``OSError`` names."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI, turning user errors into one line and exit status 2
    (an ``OSError`` from outside the package's writers: one line and exit status 1)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not is_main_process():
        quiet_libraries()
    try:
        cli.main(args=argv, prog_name="beir-peft", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BeirPeftError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:  # a write (or read) the system refused: no traceback, the path named
        click.echo(f"error: {_os_error_line(exc)}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0
