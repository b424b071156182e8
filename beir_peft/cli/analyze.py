"""``beir-peft analyze calibration | query-length``: analyses of saved TREC runs."""

from __future__ import annotations

from pathlib import Path

import click

from ..analysis.calibration import (
    DEFAULT_BINS,
    DEFAULT_DEFINITION,
    DEFAULT_TOP_K,
    DEFINITIONS,
    LAYOUTS,
    calibration,
    plot_reliability,
)
from ..analysis.query_length import DEFAULT_BUCKETS
from ..io import check_output_path
from . import options
from .common import echo

#: the options every ``analyze`` command shares: --dataset, --split, --run, --plot, --output
analysis_inputs = options.apply(
    options.dataset(),
    options.split("test", help="qrels split the runs were made on."),
    click.option(
        "--run",
        "runs",
        multiple=True,
        required=True,
        metavar="NAME=FILE",
        callback=options.named_values("--run", "run", "FILE", lambda value: Path(value).stem, convert=Path),
        help="A TREC run file (e.g. from `beir-peft evaluate --run-file`) and the model name to show; repeat to compare.",
    ),
    click.option(
        "--plot",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write a PNG plot (needs matplotlib).",
    ),
    options.output(folder=False, help="Write the numbers as JSON."),
)


@click.group()
def analyze():
    """Analyse saved TREC runs: calibration (ECE) and query-length robustness (Tam et al. 2022, section 7)."""


@analyze.command("calibration")
@analysis_inputs
@click.option(
    "--bins",
    default=DEFAULT_BINS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Equal-width confidence bins.",
)
@click.option(
    "--definition",
    type=click.Choice(DEFINITIONS),
    default=DEFAULT_DEFINITION,
    show_default=True,
    help="pooled: every top-k (probability, relevant) pair is a sample (the authors' code); "
    "top-label: one sample per query, the top document (the paper's text).",
)
@click.option(
    "--temperature",
    default=options.parameter_default(calibration, "temperature"),
    show_default=True,
    type=options.POSITIVE_FLOAT,
    help="Softmax temperature over the top-k scores.",
)
@click.option(
    "--top-k",
    default=DEFAULT_TOP_K,
    show_default=True,
    type=click.IntRange(min=1),
    help="Documents per query.",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default=options.parameter_default(plot_reliability, "layout"),
    show_default=True,
    help="Reliability diagram: one panel per model, or all models in one panel.",
)
@options.keep_identical_ids()
def analyze_calibration(dataset, split, runs, plot, output, bins, definition, temperature, top_k, layout,
                        keep_identical_ids):  # fmt: skip
    """Expected calibration error of each run's top-k softmax; print a table, optionally plot reliability diagrams."""
    from ..analysis.calibration import format_calibration_table

    settings = {"bins": bins, "definition": definition, "temperature": temperature, "top_k": top_k,
                "ignore_identical_ids": not keep_identical_ids}  # fmt: skip
    data, loaded = _inputs(dataset, split, runs, output, plot)
    results = {
        name: calibration(
            data.qrels,
            run,
            num_bins=bins,
            definition=definition,
            temperature=temperature,
            top_k=top_k,
            ignore_identical_ids=not keep_identical_ids,
            name=name,
        )  # fmt: skip
        for name, run in loaded.items()
    }
    echo(f"{data.describe()} | ECE ({definition}), top {top_k}, {bins} bins, temperature {temperature:g}")
    click.echo(format_calibration_table(results))
    body = {"results": {name: result.to_json() for name, result in results.items()}}
    _write_json(output, "calibration", data, runs, settings, body)
    if plot is not None:
        plot_reliability(results, plot, layout=layout, title=f"{data.name}/{split}")
        echo(f"wrote {plot}")


@analyze.command("query-length")
@analysis_inputs
@click.option(
    "--buckets",
    default=DEFAULT_BUCKETS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Query-length buckets of about equal size (ties can merge some).",
)
@options.keep_identical_ids()
def analyze_query_length(dataset, split, runs, plot, output, buckets, keep_identical_ids):
    """nDCG@10 of each run per bucket of query length (whitespace tokens); print a Markdown table, optionally plot it."""
    from ..analysis.query_length import plot_query_length, query_length_analysis

    data, loaded = _inputs(dataset, split, runs, output, plot)
    result = query_length_analysis(
        data.queries, data.qrels, loaded, num_buckets=buckets, ignore_identical_ids=not keep_identical_ids
    )
    merged = f" ({buckets} asked; ties merged some)" if len(result.buckets) < buckets else ""
    echo(f"{data.describe()} | {len(result.buckets)} query-length buckets{merged}")
    click.echo(result.to_markdown())
    for name, count in result.missing.items():
        if count:
            echo(f"run {name!r} lacks {count} judged queries; they count as nDCG 0")
    settings = {"buckets": buckets, "k": result.k, "ignore_identical_ids": not keep_identical_ids}
    _write_json(output, "query-length", data, runs, settings, {"result": result.to_json()})
    if plot is not None:
        plot_query_length(result, plot, title=f"{data.name}/{split}")
        echo(f"wrote {plot}")


def _inputs(dataset, split, runs: dict[str, Path], output: Path | None, plot: Path | None):
    """The outputs checked (and matplotlib, for a plot) before the runs and the dataset are read."""
    from ..analysis._plotting import require_matplotlib
    from ..analysis.runs import read_run_file
    from ..data import DEMO_DATASET, load_dataset

    if output is not None:
        check_output_path(output, what="--output")
    if plot is not None:
        check_output_path(plot, what="--plot")
        if output is not None and output.resolve() == plot.resolve():
            raise click.UsageError("--output and --plot name the same file")
        require_matplotlib()
    loaded = {name: read_run_file(path) for name, path in runs.items()}
    return load_dataset(dataset or DEMO_DATASET, split=split), loaded


def _write_json(
    output: Path | None, kind: str, data, runs: dict[str, Path], settings: dict, body: dict
) -> None:
    from ..io import write_json_atomic
    from ..versions import library_versions

    if output is None:
        return
    write_json_atomic(output, {
        "analysis": kind, "dataset": data.name, "dataset_path": str(data.path), "split": data.split,
        "run_files": {name: str(path) for name, path in runs.items()}, "settings": settings, **body,
        "versions": library_versions(),
    })  # fmt: skip
    echo(f"wrote {output}")
