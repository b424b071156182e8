"""``beir-peft compare``: several models on several datasets head to head, a report and a chart."""

from __future__ import annotations

from pathlib import Path

import click

from ..analysis.compare import CompareConfig, default_name
from ..io import check_output_path
from ..search import SINGLE_VECTOR_SEARCHES
from . import options
from .common import echo, quiet_libraries


@click.command()
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    callback=options.named_values("--model", "model", "MODEL", default_name),
    help="NAME=MODEL: a saved folder, a sentence-transformers model or bm25 (repeatable; adds to CONFIG_FILE).",
)
@options.dataset(multiple=True, help="Dataset name or folder (repeatable).")
@options.split(None, help=f"qrels split [default: {options.config_default(CompareConfig, 'split')}].")
@click.option("--baseline", default=None, help="Model the others are tested against [default: the first].")
@click.option("--search", type=click.Choice(SINGLE_VECTOR_SEARCHES), default=None,
              help=f"Search for single-vector models [default: {options.config_default(CompareConfig, 'search')}]; "
              "ColBERT models use exact MaxSim.")  # fmt: skip
@options.batch_size(
    None, help=f"Encoding batch size [default: {options.config_default(CompareConfig, 'batch_size')}]."
)
@options.output(
    folder=True,
    name="--output-dir",
    default="compare-report",
    help="Report files and the cached runs (runs/<model>/<dataset>.<split>.trec).",
)
@click.option(
    "--adopt",
    "adopted",
    multiple=True,
    metavar="MODEL:DATASET=RUN.trec",
    help="Use this existing run (e.g. from `evaluate --run-file`) for MODEL on DATASET instead of recomputing it.",
)
@click.option("--no-plot", is_flag=True, help="Skip the bar chart (no matplotlib needed).")
@options.device(help="torch device, e.g. cuda:0 (default: the best available).")
@options.dtype(default=None, help=" [default: the config file's, else float32]")
@options.quiet()
def compare(config_file, models, datasets, split, baseline, search, batch_size, output_dir, adopted, no_plot, device,
            dtype, quiet):  # fmt: skip
    """Evaluate several models on several datasets head to head; write a Markdown/CSV/JSON report and a chart.

    Runs are cached in --output-dir: a rerun only evaluates new or changed (model, dataset) pairs.
    Differences to the baseline are tested by a two-tailed paired t-test over per-query nDCG@10.
    """
    from ..analysis.compare import format_markdown, write_report
    from ..pipelines.compare import run_comparison

    overrides = {"split": split, "baseline": baseline, "search": search, "batch_size": batch_size,
                 "dtype": dtype}  # fmt: skip
    settings = _settings(config_file, models, datasets, {k: v for k, v in overrides.items() if v is not None})
    check_output_path(output_dir, folder=True, what="--output-dir")
    config = CompareConfig(**settings)
    if quiet:
        quiet_libraries()
    comparison = run_comparison(
        config, output_dir, device=device, show_progress_bar=not quiet, echo=echo, adopt=_adopted(adopted)
    )
    click.echo(format_markdown(comparison))
    for path in write_report(comparison, output_dir, plot=not no_plot):
        echo(f"wrote {path}")


def _settings(
    config_file: Path | None, models: dict[str, str], datasets: tuple[str, ...], overrides: dict
) -> dict:
    """CompareConfig fields: CONFIG_FILE's, plus the --model and --dataset options, then the overrides."""
    settings: dict[str, object] = {}
    if config_file is not None:
        base = CompareConfig.from_file(config_file)
        settings = {
            "models": dict(base.models), "datasets": list(base.datasets), "split": base.split,
            "baseline": base.baseline if base.baseline != next(iter(base.models)) else None,
            "search": base.search, "batch_size": base.batch_size, "k_values": base.k_values,
            "alpha": base.alpha, "ignore_identical_ids": base.ignore_identical_ids,
        }  # fmt: skip
    clash = sorted(set(models) & set(settings.get("models", {})))
    if clash:
        raise click.UsageError(f"--model {clash[0]} is already a model of {config_file}")
    settings["models"] = {**settings.get("models", {}), **models}
    settings["datasets"] = [
        *settings.get("datasets", []),
        *(d for d in datasets if d not in settings.get("datasets", [])),
    ]
    settings.update(overrides)
    if not settings["models"] or not settings["datasets"]:
        raise click.UsageError("give a CONFIG_FILE, or at least one --model and one --dataset")
    return settings


def _adopted(values: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """``--adopt MODEL:DATASET=RUN.trec`` options as ``{(model, dataset): run file}``."""
    adopt = {}
    for value in values:
        pair, sep, file = value.partition("=")
        model_name, colon, dataset_name = pair.partition(":")
        if not (sep and colon and model_name and dataset_name and file):
            raise click.BadParameter(f"expected MODEL:DATASET=RUN.trec, got {value!r}", param_hint="--adopt")
        adopt[(model_name, dataset_name)] = file
    return adopt
