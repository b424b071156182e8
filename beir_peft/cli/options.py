"""The options several commands share, each defined once; defaults are read from the configs.

An option factory (``output(folder=True, required=True, help=...)``) fixes the flags, the type and
the usual help text; a command passes only what differs for it. :func:`config_default` reads a
default from a config dataclass, so ``--help`` shows the value the library would use.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import click

from ..models.precision import ENCODING_DTYPES

POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
NO_PROGRESS = "No progress bars."
BEST_DEVICE = "torch device (default: the best available)."


def config_default(config_class: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config_class``."""
    field = next(f for f in dataclasses.fields(config_class) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def parameter_default(function, name: str) -> Any:
    """The default of parameter ``name`` of ``function`` (a library call the option feeds)."""
    return inspect.signature(function).parameters[name].default


def _with_default(default: Any, show_default: bool | None) -> dict[str, Any]:
    if default is None:
        return {"default": None}
    return {"default": default, "show_default": True if show_default is None else show_default}


def dataset(*, required: bool = False, multiple: bool = False, help: str | None = None):
    """``--dataset/-d``: a BEIR dataset name or folder."""
    text = help or "BEIR dataset name or folder (default: the bundled demo dataset)."
    if multiple:
        return click.option("--dataset", "-d", "datasets", multiple=True, help=text)
    return click.option("--dataset", "-d", required=required, default=None, help=text)


def split(default: str | None, help: str | None = None):
    """``--split``: the qrels split."""
    return click.option("--split", **_with_default(default, None), help=help)


def output(
    *, folder: bool, required: bool = False, help: str | None = None, name: str = "--output", default=None
):
    """``--output/-o``: a file (``folder=False``) or a folder; checked before any work starts."""
    path = (
        click.Path(file_okay=False, path_type=Path) if folder else click.Path(dir_okay=False, path_type=Path)
    )
    return click.option(name, "-o", required=required, type=path, help=help, **_with_default(default, None))


def batch_size(default: int | None, *, minimum: int = 1, help: str | None = None):
    """``--batch-size``."""
    return click.option(
        "--batch-size", **_with_default(default, None), type=click.IntRange(min=minimum), help=help
    )


def learning_rate(help: str | None = None, default: float | None = None):
    """``--lr``."""
    return click.option(
        "--lr", "learning_rate", **_with_default(default, None), type=POSITIVE_FLOAT, help=help
    )


def epochs(default: int):
    return click.option("--epochs", default=default, show_default=True, type=click.IntRange(min=1))


def max_steps():
    return click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")


def checkpoint_every(default: int, help: str | None = None):
    return click.option(
        "--checkpoint-every", default=default, show_default=True, type=click.IntRange(min=0), help=help
    )


def held_out(noun: str, default: int | None, signal: str, documented_default: int | None = None):
    """``--held-out-<noun>``: how many of the run's own training items the adaptation check keeps out.

    ``default`` ``None`` leaves the choice to the method (its preset), ``documented_default`` is
    then the value the help names.
    """
    shown = f"; default {documented_default}" if documented_default is not None else ""
    return click.option(
        f"--held-out-{noun}",
        default=default,
        show_default=default is not None,
        type=click.IntRange(min=0),
        help=f"{noun.capitalize()} kept out of training, on which the start and the trained model are compared "
        f"at the end ({signal}{shown}; at most a tenth; 0: no check).",
    )


def seed(default: int):
    return click.option("--seed", default=default, show_default=True, type=int)


def device(help: str | None = BEST_DEVICE):
    return click.option("--device", default=None, help=help)


def dtype(default: str | None = "float32", help: str = ""):
    """``--dtype``: the encoding dtype (scores stay float32; see beir_peft.models.precision)."""
    return click.option(
        "--dtype",
        type=click.Choice(list(ENCODING_DTYPES)),
        default=default,
        show_default=default is not None,
        help="Encode in this dtype (bfloat16: faster on CPUs with AVX-512 BF16 or AMX, and on GPUs; "
        "float16: GPUs). Scores are computed in float32 whatever it is." + help,
    )


def quiet(help: str | None = NO_PROGRESS):
    return click.option("--quiet", "-q", is_flag=True, help=help)


def overwrite(help: str | None = None):
    return click.option("--overwrite", is_flag=True, help=help)


def resume(help: str | None = None):
    return click.option("--resume", is_flag=True, help=help)


def keep_identical_ids():
    return click.option(
        "--keep-identical-ids",
        is_flag=True,
        help="Keep documents whose id equals the query id (BEIR drops them).",
    )


def settings(help: str):
    """``--set KEY=VALUE`` (repeatable), parsed by :func:`parse_settings`."""
    return click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help=help)


def parse_settings(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--set key=value`` pairs, values parsed as JSON when they parse (numbers, booleans, lists)."""
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            options[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = raw
    return options


def k_values_callback(_ctx, _param, value: str) -> list[int]:
    """``--k-values 1,10,100`` as sorted unique positive integers."""
    try:
        values = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1,10,100, got {value!r}"
        ) from None
    if not values or values[0] < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return values


def named_values(option: str, noun: str, what: str, default_name, convert=str):
    """A callback turning repeated ``NAME=VALUE`` options (a bare VALUE is named by
    ``default_name(VALUE)``) into ``{name: convert(value)}``, names unique."""

    def callback(_ctx, _param, values: tuple[str, ...]) -> dict[str, Any]:
        named: dict[str, Any] = {}
        for given in values:
            name, sep, value = given.partition("=")
            if not sep:
                name, value = default_name(given), given
            name, value = name.strip(), value.strip()
            if not name or not value:
                raise click.BadParameter(f"expected NAME={what}, got {given!r}", param_hint=option)
            if name in named:
                raise click.BadParameter(f"the {noun} name {name!r} is given twice", param_hint=option)
            named[name] = convert(value)
        return named

    return callback


def apply(*decorators):
    """One decorator applying ``decorators`` in the order listed (the first is the first option)."""

    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate
