"""The ``beir-peft`` command line: ``evaluate``, ``train`` and ``analyze calibration | query-length``.

Every user error (a bad dataset, model folder or option) ends with one line on stderr and a
non-zero exit status (2 for usage and input errors); tracebacks are kept for bugs. Every output
(``--output``, ``--run-file``, ``--index-dir``, ``--plot``, ``--output-dir``) is checked before any
work starts; a write that still fails (a full disk, a folder made read-only meanwhile) is one line
naming the path too (exit 2 from the package's writers, 1 for any other ``OSError``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from .errors import BeirPeftError
from .io import check_output_path

#: shown after a run on the bundled demo dataset
NEXT_DATASETS = ("scifact", "nfcorpus", "fiqa", "arguana", "scidocs")


def _k_values(_ctx, _param, value: str) -> list[int]:
    try:
        values = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1,10,100, got {value!r}"
        ) from None
    if not values or values[0] < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return values


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="beir-peft")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(verbose: bool) -> None:
    """Parameter-efficient and domain-adapted dense retrievers, evaluated with BEIR."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# ------------------------------------------------------------------------------------- evaluate
@cli.command()
@click.option(
    "--dataset",
    "-d",
    "datasets",
    multiple=True,
    help="BEIR dataset name or folder (default: the bundled demo dataset). Repeat it, each with its own "
    "--model, to evaluate several datasets on one shared backbone.",
)
@click.option("--split", default="test", show_default=True, help="qrels split to evaluate on.")
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Saved beir_peft folder or sentence-transformers model [default: all-MiniLM-L6-v2]. With several "
    "--dataset: one per dataset, in order (a folder, or none for the plain backbone).",
)
@click.option(
    "--domains",
    "domains_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML mapping of dataset -> trained folder (null: the plain backbone): evaluate them all on one "
    "shared backbone, in one process (see docs/serving.md).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write metrics, config, versions and timings as JSON.",
)
@click.option(
    "--run-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the ranking as a TREC run file.",
)
@click.option(
    "--k-values",
    default="1,3,5,10,100,1000",
    show_default=True,
    callback=_k_values,
    help="Cut-offs, comma-separated.",
)
@click.option(
    "--batch-size", default=128, show_default=True, type=click.IntRange(min=1), help="Encoding batch size."
)
@click.option(
    "--search",
    type=click.Choice(["exact", "faiss-flat", "faiss-hnsw", "ann"]),
    default="exact",
    show_default=True,
    help="exact|faiss-flat|faiss-hnsw are for single-vector models; exact|ann for late interaction "
    "(pt2-colbert, colbert-ft: ann = faiss candidates over token vectors, then exact MaxSim re-ranking).",
)
@click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save (and reuse) the faiss index (late interaction: the token vectors and the ANN index) here.",
)
@click.option(
    "--candidates-per-token",
    type=click.IntRange(min=1),
    help="--search ann: nearest token vectors per query token (ColBERT's k') [default: 100].",
)
@click.option(
    "--nprobe",
    type=click.IntRange(min=1),
    help="--search ann: IVF lists visited per query token [default: 32].",
)
@click.option(
    "--index-factory",
    help="--search ann: a faiss index_factory string (inner product), e.g. IVF4096,PQ16 or Flat "
    "[default: IVF-PQ sized to the corpus].",
)
@click.option(
    "--faiss-gpu",
    is_flag=True,
    help="--search faiss-flat or ann: search the faiss index on all visible GPUs (needs faiss-gpu: "
    'pip install "beir-peft[gpu]"; untested on a GPU here).',
)
@click.option("--device", default=None, help="torch device, e.g. cuda:0 (default: the best available).")
@click.option(
    "--keep-identical-ids",
    is_flag=True,
    help="Keep documents whose id equals the query id (BEIR drops them).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def evaluate(
    datasets,
    split,
    models,
    domains_file,
    output,
    run_file,
    k_values,
    batch_size,
    search,
    index_dir,
    candidates_per_token,
    nprobe,
    index_factory,
    faiss_gpu,
    device,
    keep_identical_ids,
    quiet,
):
    """Retrieve and score a dataset split with BEIR's evaluator; print a metrics table.

    --model bm25 evaluates the lexical baseline (bm25s, Elasticsearch's k1=1.2, b=0.75).
    Several --dataset/--model pairs (or --domains FILE) serve every trained folder from one backbone
    and print one table, a row per dataset.
    """
    from .data import DEMO_DATASET, load_dataset
    from .evaluation import evaluate_retriever, format_table, write_result_json, write_run_file
    from .retrievers import load_retriever

    ann_options = {
        key: value
        for key, value in (
            ("candidates_per_token", candidates_per_token),
            ("nprobe", nprobe),
            ("index_factory", index_factory),
        )
        if value is not None
    }
    if ann_options and search != "ann":
        flags = ", ".join("--" + key.replace("_", "-") for key in ann_options)
        raise click.UsageError(f"{flags}: only for --search ann")
    _check_evaluation_outputs(output, run_file, index_dir)
    search_options = dict(ann_options)
    if faiss_gpu:
        if search not in ("faiss-flat", "ann"):
            raise click.UsageError("--faiss-gpu: only for --search faiss-flat or ann (faiss-gpu has no HNSW)")
        search_options["use_gpu"] = True
    if quiet:
        _quiet_libraries()
    if domains_file is not None or len(datasets) > 1 or len(models) > 1:
        _evaluate_domains(
            _domain_pairs(datasets, models, domains_file), split=split, output=output, run_file=run_file,
            index_dir=index_dir, k_values=k_values, batch_size=batch_size, search=search,
            search_options=search_options, device=device, keep_identical_ids=keep_identical_ids, quiet=quiet,
        )  # fmt: skip
        return
    dataset = datasets[0] if datasets else None
    model = models[0] if models else None
    data = load_dataset(dataset or DEMO_DATASET, split=split)
    retriever = load_retriever(model, device=device)
    click.echo(f"{data.describe()} | model: {_describe(retriever)}", err=True)
    result = evaluate_retriever(
        retriever,
        data.corpus,
        data.queries,
        data.qrels,
        k_values=k_values,
        search=search,
        batch_size=batch_size,
        ignore_identical_ids=not keep_identical_ids,
        index_dir=index_dir,
        show_progress_bar=not quiet,
        search_options=search_options,
        config={
            "dataset": data.name,
            "dataset_path": str(data.path),
            "split": split,
            "model": model or "default",
        },
    )
    click.echo(format_table(result.metrics, k_values))
    click.echo(
        f"{len(data.queries)} queries, {len(data.corpus)} documents, {result.timings['total']:.1f} s",
        err=True,
    )
    if run_file is not None:  # before the JSON: a result file means its run file is complete
        write_run_file(result.results, run_file)
        click.echo(f"wrote {run_file}", err=True)
    if output is not None:
        write_result_json(result, output)
        click.echo(f"wrote {output}", err=True)
    if dataset is None:
        click.echo(
            "This was the bundled demo dataset (a smoke test, not a benchmark). Try a real one next: "
            + ", ".join(f"--dataset {name}" for name in NEXT_DATASETS[:3])
            + " (downloaded from BEIR once, or set BEIR_PEFT_DATA to a folder of BEIR datasets).",
            err=True,
        )


def _check_evaluation_outputs(output: Path | None, run_file: Path | None, index_dir: Path | None) -> None:
    """``evaluate``'s outputs, checked before the dataset and the model are loaded."""
    if output is not None:
        check_output_path(output, what="--output")
    if run_file is not None:
        check_output_path(run_file, what="--run-file")
        if output is not None and output.resolve() == run_file.resolve():
            raise click.UsageError("--output and --run-file name the same file")
    if index_dir is not None:
        # a folder holding an index may be only read (reused); an empty or new one is written
        holds_index = index_dir.is_dir() and any(index_dir.iterdir())
        check_output_path(index_dir, folder=True, what="--index-dir", writable=not holds_index)


#: the --model value of the plain backbone (no adapter) among several datasets
PLAIN_BACKBONE_MODEL = "none"


def _domain_pairs(
    datasets: tuple[str, ...], models: tuple[str, ...], domains_file: Path | None
) -> list[tuple[str, str | None]]:
    """``(dataset, folder or None)`` pairs from repeated --dataset/--model options and/or --domains."""
    if len(datasets) != len(models):
        raise click.UsageError(
            f"several datasets: give one --model per --dataset, in order (got {len(datasets)} --dataset, "
            f"{len(models)} --model), or a --domains FILE"
        )
    pairs: list[tuple[str, str | None]] = [
        (d, None if m.lower() == PLAIN_BACKBONE_MODEL else m) for d, m in zip(datasets, models, strict=True)
    ]
    if domains_file is not None:
        pairs += _read_domains_file(domains_file)
    seen = set()
    for dataset, _ in pairs:
        if dataset in seen:
            raise click.UsageError(f"dataset {dataset!r} is given twice; each dataset gets one model")
        seen.add(dataset)
    return pairs


def _read_domains_file(path: Path) -> list[tuple[str, str | None]]:
    """A YAML mapping ``dataset: folder`` (``null``: the plain backbone), optionally under ``domains:``."""
    import yaml

    from .errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if isinstance(data, dict) and set(data) == {"domains"}:
        data = data["domains"]
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of dataset -> trained folder (or null)")
    pairs = []
    for dataset, folder in data.items():
        if not isinstance(folder, (str, type(None))):
            raise ConfigError(
                f"{path}: the model of {dataset!r} must be a folder path or null, got {folder!r}"
            )
        if isinstance(folder, str) and folder.lower() == PLAIN_BACKBONE_MODEL:
            folder = None
        elif isinstance(folder, str) and not Path(folder).expanduser().is_absolute():
            folder = str(path.parent / folder)  # relative to the file, as compare's configs are
        pairs.append((str(dataset), folder))
    return pairs


def _evaluate_domains(
    pairs: list[tuple[str, str | None]],
    *,
    split,
    output,
    run_file,
    index_dir,
    k_values,
    batch_size,
    search,
    search_options,
    device,
    keep_identical_ids,
    quiet,
) -> None:
    """Evaluate every (dataset, folder) pair on one shared backbone (``beir_peft.load_domains``); one table."""
    from .data import load_dataset
    from .evaluation import evaluate_retriever, format_domains_table
    from .io import write_json_atomic
    from .serving import load_domains

    if run_file is not None or index_dir is not None:
        flag = "--run-file" if run_file is not None else "--index-dir"
        raise click.UsageError(f"{flag}: only for one dataset (with several, use --output for the results)")
    loaded = [(load_dataset(dataset, split=split), folder) for dataset, folder in pairs]
    names = [data.name for data, _ in loaded]
    if len(set(names)) != len(names):
        raise click.UsageError(f"two of the datasets are both named {names!r}; give each dataset once")
    served = load_domains({data.name: folder for data, folder in loaded}, device=device)
    click.echo(f"{len(served)} domains on one backbone: {', '.join(served)}", err=True)
    results = {}
    for data, folder in loaded:
        retriever = served[data.name]
        click.echo(f"{data.describe()} | model: {_describe(retriever)}", err=True)
        results[data.name] = evaluate_retriever(
            retriever, data.corpus, data.queries, data.qrels, k_values=k_values, search=search,
            batch_size=batch_size, ignore_identical_ids=not keep_identical_ids, show_progress_bar=not quiet,
            search_options=search_options,
            config={"dataset": data.name, "dataset_path": str(data.path), "split": split,
                    "model": str(folder) if folder is not None else PLAIN_BACKBONE_MODEL},
        )  # fmt: skip
    labels = {name: results[name].config["model"] for name in results}
    click.echo(format_domains_table({n: r.metrics for n, r in results.items()}, labels, k_values))
    if output is not None:
        write_json_atomic(output, {"served": True, "datasets": {n: r.to_json() for n, r in results.items()}})
        click.echo(f"wrote {output}", err=True)


def _quiet_libraries() -> None:
    """No weight-loading progress bars from transformers under ``--quiet``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _describe(retriever) -> str:
    describe = getattr(retriever, "describe", None)
    return describe() if callable(describe) else getattr(retriever, "name_or_path", type(retriever).__name__)


# ------------------------------------------------------------------------------------- train
TRAIN_METHODS = ("pt2-dpr", "prompt", "bitfit", "lora", "ft", "pt2-colbert", "colbert-ft")
LATE_INTERACTION = ("pt2-colbert", "colbert-ft")
#: GPL's presets (beir_peft.methods.gpl.PRESETS), named here so --help needs no torch import
PRESET_NAMES = ("paper", "small", "tiny")
#: `train`'s presets (beir_peft.methods.train_presets.TRAIN_PRESETS)
TRAIN_PRESET_NAMES = ("paper",)
#: TrainingConfig fields whose `train` option has another name
TRAINING_OPTION_NAMES = {"backbone_dropout": "no_backbone_dropout"}


def _options(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--set key=value`` pairs, values parsed as JSON when they parse (numbers, booleans, lists)."""
    import json

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


@cli.command()
@click.argument("method", type=click.Choice(TRAIN_METHODS))
@click.option(
    "--dataset", "-d", default=None, help="BEIR dataset name or folder (default: the bundled demo dataset)."
)
@click.option(
    "--preset",
    type=click.Choice(TRAIN_PRESET_NAMES),
    default=None,
    help="pt2-dpr: paper = Tam et al. 2022 appendix B.1 (prefix 100, no gate, random init, cls pooling, "
    "lr 1e-2, batch 128, scale 1, one BM25 hard negative, 40 epochs); options given explicitly override it.",
)
@click.option(
    "--split",
    default="train",
    show_default=True,
    help="qrels split whose (query, relevant passage) pairs are trained on.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder; ends as a saved retriever.",
)
@click.option(
    "--backbone", default=None, help="Backbone model [default: sentence-transformers/all-MiniLM-L6-v2]."
)
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--lr",
    "learning_rate",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate [default: per method].",
)
@click.option("--max-steps", default=None, type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option(
    "--hard-negatives",
    default=None,
    type=click.IntRange(min=0),
    help="Hard negatives per query [default: 0; ColBERT methods and --preset paper: 1].",
)
@click.option(
    "--negatives",
    "negative_miner",
    type=click.Choice(["backbone", "bm25"]),
    default="backbone",
    show_default=True,
    help="Who mines the hard negatives: the starting backbone (dense) or BM25 (bm25s).",
)
@click.option(
    "--in-batch-negatives",
    is_flag=True,
    help="pt2-colbert, colbert-ft: also score the batch's other passages, besides the hard negatives.",
)
@click.option(
    "--scale",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Loss similarity scale (1/temperature).",
)
@click.option(
    "--checkpoint-every",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Steps between checkpoints.",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--prefix-length", default=None, type=click.IntRange(min=1), help="Prompt length (pt2-dpr, prompt)."
)
@click.option(
    "--pooling",
    type=click.Choice(["cls", "mean"]),
    default=None,
    help="Pooling [default: the backbone's own].",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other model option, e.g. --set gate=false --set init=random.",
)
@click.option(
    "--resume", is_flag=True, help="Continue the interrupted run in --output from its newest checkpoint."
)
@click.option(
    "--no-backbone-dropout",
    "no_backbone_dropout",
    is_flag=True,
    help="Train with the frozen backbone in eval mode (no dropout inside it); much faster for prompt methods.",
)
@click.option("--overwrite", is_flag=True, help="Start afresh even if --output holds a run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def train(
    ctx,
    method,
    dataset,
    preset,
    split,
    output,
    backbone,
    epochs,
    batch_size,
    learning_rate,
    max_steps,
    hard_negatives,
    negative_miner,
    in_batch_negatives,
    scale,
    checkpoint_every,
    seed,
    prefix_length,
    pooling,
    settings,
    no_backbone_dropout,
    resume,
    overwrite,
    quiet,
):
    """Train METHOD (pt2-dpr, prompt, bitfit, lora, ft, pt2-colbert or colbert-ft) on a split's relevance pairs."""
    from .data import DEMO_DATASET, load_dataset
    from .encoders.backbone import DEFAULT_BACKBONE
    from .methods.supervised import TrainingConfig
    from .methods.supervised import train as run_training
    from .models.tuned import build_retriever
    from .training.pairs import pair_run_folder

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    check_output_path(output, folder=True, what="--output")
    pair_run_folder(output).check(resume, overwrite)
    if quiet:
        _quiet_libraries()
    if in_batch_negatives and method not in LATE_INTERACTION:
        raise click.UsageError(
            "--in-batch-negatives: only for pt2-colbert and colbert-ft (dual encoders always use them)"
        )
    options = _options(settings)
    if prefix_length is not None:
        options["prefix_length"] = prefix_length
    if pooling is not None:
        options["pooling"] = pooling
    training_settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "hard_negatives": hard_negatives,
        "negative_miner": negative_miner,
        "in_batch_negatives": True if in_batch_negatives else None,
        "scale": scale,
        "checkpoint_every": checkpoint_every,
        "seed": seed,
        "backbone_dropout": not no_backbone_dropout,
    }
    if preset is not None:
        options, training_settings = _apply_train_preset(ctx, preset, method, options, training_settings)
    if training_settings["hard_negatives"] is None:
        training_settings["hard_negatives"] = int(method in LATE_INTERACTION)
    if not training_settings["hard_negatives"] and not _given(ctx, "negative_miner"):
        training_settings["negative_miner"] = "backbone"  # a preset's miner has nothing to mine
    if training_settings["negative_miner"] != "backbone" and not training_settings["hard_negatives"]:
        raise click.UsageError(f"--negatives {negative_miner} needs --hard-negatives 1 or more")
    config = TrainingConfig(**training_settings)
    data = load_dataset(dataset or DEMO_DATASET, split=split)
    import torch

    torch.manual_seed(seed)  # a random prefix initialisation is part of the run
    if method in LATE_INTERACTION:
        from .models.colbert import PT2ColBERT

        retriever = PT2ColBERT(backbone or DEFAULT_BACKBONE, method=method, **options)
    else:
        retriever = build_retriever(method, backbone or DEFAULT_BACKBONE, **options)
    click.echo(f"{data.describe()} | {retriever.describe()}", err=True)
    folder = run_training(
        retriever, data, output, config, resume=resume, overwrite=overwrite, show_progress_bar=not quiet
    )
    click.echo(
        f"saved {folder}; evaluate with: beir-peft evaluate --model {folder} --dataset {dataset or DEMO_DATASET}",
        err=True,
    )


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or through the environment)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _apply_train_preset(
    ctx: click.Context, name: str, method: str, options: dict, settings: dict
) -> tuple[dict, dict]:
    """Model options and TrainingConfig settings with the preset's values where the user gave none."""
    from .methods.train_presets import train_preset

    chosen = train_preset(name, method)
    settings = dict(settings)
    for key, value in chosen.training.items():
        if not _given(ctx, TRAINING_OPTION_NAMES.get(key, key)):
            settings[key] = value
    return {**chosen.model, **options}, {**settings, "preset": name}


# ------------------------------------------------------------------------------------- analyze
def _run_files(_ctx, _param, values: tuple[str, ...]) -> dict[str, Path]:
    """``--run NAME=FILE`` options (a bare FILE is named by its stem) as ``{name: path}``; names unique."""
    runs: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep:
            name, file = Path(value).stem, value
        name, file = name.strip(), file.strip()
        if not name or not file:
            raise click.BadParameter(f"expected NAME=FILE, got {value!r}", param_hint="--run")
        if name in runs:
            raise click.BadParameter(f"the run name {name!r} is given twice", param_hint="--run")
        runs[name] = Path(file)
    return runs


def _analysis_inputs(function):
    """The options every ``analyze`` command shares: --dataset, --split, --run, --output, --plot."""
    options = [
        click.option(
            "--dataset",
            "-d",
            default=None,
            help="BEIR dataset name or folder (default: the bundled demo dataset).",
        ),
        click.option("--split", default="test", show_default=True, help="qrels split the runs were made on."),
        click.option(
            "--run",
            "runs",
            multiple=True,
            required=True,
            metavar="NAME=FILE",
            callback=_run_files,
            help="A TREC run file (e.g. from `beir-peft evaluate --run-file`) and the model name to show; repeat to compare.",
        ),
        click.option(
            "--plot",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write a PNG plot (needs matplotlib).",
        ),
        click.option(
            "--output",
            "-o",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the numbers as JSON.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _check_analysis_outputs(output: Path | None, plot: Path | None) -> None:
    if output is not None:
        check_output_path(output, what="--output")
    if plot is not None:
        check_output_path(plot, what="--plot")
        if output is not None and output.resolve() == plot.resolve():
            raise click.UsageError("--output and --plot name the same file")


def _read_runs(runs: dict[str, Path]) -> dict[str, dict[str, dict[str, float]]]:
    from .analysis.runs import read_run_file

    return {name: read_run_file(path) for name, path in runs.items()}


def _analysis_json(kind: str, data, runs: dict[str, Path], settings: dict, body: dict) -> dict:
    from .versions import library_versions

    return {
        "analysis": kind,
        "dataset": data.name,
        "dataset_path": str(data.path),
        "split": data.split,
        "run_files": {name: str(path) for name, path in runs.items()},
        "settings": settings,
        **body,
        "versions": library_versions(),
    }


@cli.group()
def analyze():
    """Analyse saved TREC runs: calibration (ECE) and query-length robustness (Tam et al. 2022, section 7)."""


@analyze.command("calibration")
@_analysis_inputs
@click.option(
    "--bins", default=10, show_default=True, type=click.IntRange(min=1), help="Equal-width confidence bins."
)
@click.option(
    "--definition",
    type=click.Choice(["pooled", "top-label"]),
    default="pooled",
    show_default=True,
    help="pooled: every top-k (probability, relevant) pair is a sample (the authors' code); "
    "top-label: one sample per query, the top document (the paper's text).",
)
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Softmax temperature over the top-k scores.",
)
@click.option(
    "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Documents per query."
)
@click.option(
    "--layout",
    type=click.Choice(["side", "overlay"]),
    default="side",
    show_default=True,
    help="Reliability diagram: one panel per model, or all models in one panel.",
)
@click.option(
    "--keep-identical-ids",
    is_flag=True,
    help="Keep documents whose id equals the query id (BEIR drops them).",
)
def analyze_calibration(
    dataset, split, runs, plot, output, bins, definition, temperature, top_k, layout, keep_identical_ids
):
    """Expected calibration error of each run's top-k softmax; print a table, optionally plot reliability diagrams."""
    from .analysis._plotting import require_matplotlib
    from .analysis.calibration import calibration, format_calibration_table, plot_reliability
    from .data import DEMO_DATASET, load_dataset
    from .io import write_json_atomic

    _check_analysis_outputs(output, plot)
    if plot is not None:
        require_matplotlib()
    loaded = _read_runs(runs)
    data = load_dataset(dataset or DEMO_DATASET, split=split)
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
        )
        for name, run in loaded.items()
    }
    click.echo(
        f"{data.describe()} | ECE ({definition}), top {top_k}, {bins} bins, temperature {temperature:g}",
        err=True,
    )
    click.echo(format_calibration_table(results))
    if output is not None:
        settings = {
            "bins": bins,
            "definition": definition,
            "temperature": temperature,
            "top_k": top_k,
            "ignore_identical_ids": not keep_identical_ids,
        }
        body = {"results": {name: result.to_json() for name, result in results.items()}}
        write_json_atomic(output, _analysis_json("calibration", data, runs, settings, body))
        click.echo(f"wrote {output}", err=True)
    if plot is not None:
        plot_reliability(results, plot, layout=layout, title=f"{data.name}/{split}")
        click.echo(f"wrote {plot}", err=True)


@analyze.command("query-length")
@_analysis_inputs
@click.option(
    "--buckets",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Query-length buckets of about equal size (ties can merge some).",
)
@click.option(
    "--keep-identical-ids",
    is_flag=True,
    help="Keep documents whose id equals the query id (BEIR drops them).",
)
def analyze_query_length(dataset, split, runs, plot, output, buckets, keep_identical_ids):
    """nDCG@10 of each run per bucket of query length (whitespace tokens); print a Markdown table, optionally plot it."""
    from .analysis._plotting import require_matplotlib
    from .analysis.query_length import plot_query_length, query_length_analysis
    from .data import DEMO_DATASET, load_dataset
    from .io import write_json_atomic

    _check_analysis_outputs(output, plot)
    if plot is not None:
        require_matplotlib()
    loaded = _read_runs(runs)
    data = load_dataset(dataset or DEMO_DATASET, split=split)
    result = query_length_analysis(
        data.queries, data.qrels, loaded, num_buckets=buckets, ignore_identical_ids=not keep_identical_ids
    )
    merged = f" ({buckets} asked; ties merged some)" if len(result.buckets) < buckets else ""
    click.echo(f"{data.describe()} | {len(result.buckets)} query-length buckets{merged}", err=True)
    click.echo(result.to_markdown())
    for name, count in result.missing.items():
        if count:
            click.echo(f"run {name!r} lacks {count} judged queries; they count as nDCG 0", err=True)
    if output is not None:
        settings = {"buckets": buckets, "k": result.k, "ignore_identical_ids": not keep_identical_ids}
        write_json_atomic(
            output, _analysis_json("query-length", data, runs, settings, {"result": result.to_json()})
        )
        click.echo(f"wrote {output}", err=True)
    if plot is not None:
        plot_query_length(result, plot, title=f"{data.name}/{split}")
        click.echo(f"wrote {plot}", err=True)


# ------------------------------------------------------------------------------------- compare
def _model_specs(_ctx, _param, values: tuple[str, ...]) -> dict[str, str]:
    """``--model NAME=SPEC`` options (a bare SPEC is named by its last path part) as ``{name: spec}``."""
    from .analysis.compare import default_name

    models: dict[str, str] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep:
            name, spec = default_name(value), value
        name, spec = name.strip(), spec.strip()
        if not name or not spec:
            raise click.BadParameter(f"expected NAME=MODEL, got {value!r}", param_hint="--model")
        if name in models:
            raise click.BadParameter(f"the model name {name!r} is given twice", param_hint="--model")
        models[name] = spec
    return models


@cli.command()
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    callback=_model_specs,
    help="NAME=MODEL: a saved folder, a sentence-transformers model or bm25 (repeatable; adds to CONFIG_FILE).",
)
@click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset name or folder (repeatable).")
@click.option("--split", default=None, help="qrels split [default: test].")
@click.option("--baseline", default=None, help="Model the others are tested against [default: the first].")
@click.option("--search", type=click.Choice(["exact", "faiss-flat", "faiss-hnsw"]), default=None,
              help="Search for single-vector models [default: exact]; ColBERT models use exact MaxSim.")  # fmt: skip
@click.option(
    "--batch-size", default=None, type=click.IntRange(min=1), help="Encoding batch size [default: 128]."
)
@click.option(
    "--output-dir",
    "-o",
    default="compare-report",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
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
@click.option("--device", default=None, help="torch device, e.g. cuda:0 (default: the best available).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def compare(
    config_file,
    models,
    datasets,
    split,
    baseline,
    search,
    batch_size,
    output_dir,
    adopted,
    no_plot,
    device,
    quiet,
):
    """Evaluate several models on several datasets head to head; write a Markdown/CSV/JSON report and a chart.

    Runs are cached in --output-dir: a rerun only evaluates new or changed (model, dataset) pairs.
    Differences to the baseline are tested by a two-tailed paired t-test over per-query nDCG@10.
    """
    from .analysis.compare import CompareConfig, format_markdown, write_report
    from .pipelines.compare import run_comparison

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
    for key, value in (
        ("split", split),
        ("baseline", baseline),
        ("search", search),
        ("batch_size", batch_size),
    ):
        if value is not None:
            settings[key] = value
    if not settings["models"] or not settings["datasets"]:
        raise click.UsageError("give a CONFIG_FILE, or at least one --model and one --dataset")
    check_output_path(output_dir, folder=True, what="--output-dir")
    config = CompareConfig(**settings)
    if quiet:
        _quiet_libraries()
    adopt = {}
    for value in adopted:
        pair, sep, file = value.partition("=")
        model_name, colon, dataset_name = pair.partition(":")
        if not (sep and colon and model_name and dataset_name and file):
            raise click.BadParameter(f"expected MODEL:DATASET=RUN.trec, got {value!r}", param_hint="--adopt")
        adopt[(model_name, dataset_name)] = file
    comparison = run_comparison(
        config, output_dir, device=device, show_progress_bar=not quiet, echo=lambda m: click.echo(m, err=True),
        adopt=adopt,
    )  # fmt: skip
    click.echo(format_markdown(comparison))
    for path in write_report(comparison, output_dir, plot=not no_plot):
        click.echo(f"wrote {path}", err=True)


# ------------------------------------------------------------------------------------- adapt
@cli.group()
def adapt():
    """Retrievers without relevance labels: GPL (a target corpus) and ART (questions only)."""


@adapt.command("gpl")
@click.option(
    "--dataset",
    "-d",
    required=True,
    help="Target corpus: a BEIR dataset name or folder (only corpus.jsonl is read).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: every stage's output, then the trained retriever.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESET_NAMES)),
    default="paper",
    show_default=True,
    help="Steps, warm-up and query budget: paper (140k steps, 250K queries), small, tiny.",
)
@click.option(
    "--student",
    type=click.Choice(["ft", "pt2-dpr", "lora"]),
    default="ft",
    show_default=True,
    help="What is trained: the whole backbone (the paper), deep prompts, or LoRA.",
)
@click.option(
    "--backbone",
    default=None,
    help="Student backbone [default: all-MiniLM-L6-v2; the paper: GPL/msmarco-distilbert-margin-mse].",
)
@click.option(
    "--generator", default=None, help="Seq2seq query generator [default: BeIR/query-gen-msmarco-t5-base-v1]."
)
@click.option(
    "--cross-encoder", default=None, help="Pseudo labeler [default: cross-encoder/ms-marco-MiniLM-L-6-v2]."
)
@click.option(
    "--miner",
    "miners",
    multiple=True,
    help="Negative miner (repeatable): a sentence-transformers model, a saved folder or bm25 "
    "[default: msmarco-distilbert-base-v3 and msmarco-MiniLM-L-6-v3].",
)
@click.option(
    "--queries",
    "queries_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use these queries instead of generating them: JSONL with text and doc_id per line.",
)
@click.option(
    "--queries-per-passage", type=click.IntRange(min=1), help="Override the 250K rule's queries per passage."
)
@click.option(
    "--num-passages", type=click.IntRange(min=1), help="Override the 250K rule's corpus sample size."
)
@click.option("--steps", type=click.IntRange(min=1), help="Training steps [default: from --preset].")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate [default: 2e-5 for ft, the package default for the others].",
)
@click.option("--similarity", type=click.Choice(["dot", "cosine"]), default="dot", show_default=True)
@click.option("--tsdae", is_flag=True, help="TSDAE pre-training on the target corpus first (TSDAE + GPL).")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other GPLConfig field, e.g. --set negatives_per_miner=20.",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--device", default=None, help="torch device (default: the best available).")
@click.option("--overwrite", is_flag=True, help="Delete the run folder's GPL outputs and start afresh.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def adapt_gpl(dataset, output, preset, student, backbone, generator, cross_encoder, miners, queries_file,
              queries_per_passage, num_passages, steps, batch_size, learning_rate, similarity, tsdae, settings,
              seed, device, overwrite, quiet):  # fmt: skip
    """GPL (Wang et al. 2022): generate queries, mine negatives, pseudo-label with a cross-encoder, train with MarginMSE.

    Resumable: rerun the same command and finished stages are skipped.
    """
    from .data import load_corpus, resolve_dataset
    from .methods.gpl import GPLConfig, run_gpl

    check_output_path(output, folder=True, what="--output")
    options = _options(settings)
    given = {
        "preset": preset, "student": student, "backbone": backbone, "generator": generator,
        "cross_encoder": cross_encoder, "miners": list(miners) or None, "queries_per_passage": queries_per_passage,
        "num_passages": num_passages, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
        "similarity": similarity, "tsdae": tsdae, "seed": seed, "device": device,
    }  # fmt: skip
    fields = {**options, **{k: v for k, v in given.items() if v is not None}}
    try:
        config = GPLConfig(**fields)
    except TypeError as err:
        raise click.UsageError(f"--set: {err}") from None
    if quiet:
        _quiet_libraries()
    folder = resolve_dataset(dataset)
    corpus = load_corpus(folder)
    click.echo(f"GPL on {folder.name}: {len(corpus)} passages -> {output}", err=True)
    result = run_gpl(
        corpus, output, config, queries_file=queries_file, dataset_name=folder.name, overwrite=overwrite,
        show_progress_bar=not quiet, echo=lambda m: click.echo(m, err=True),
    )  # fmt: skip
    click.echo(
        f"saved {result}; evaluate with: beir-peft evaluate --model {result} --dataset {dataset}", err=True
    )


@adapt.command("art")
@click.option("--dataset", "-d", required=True, help="BEIR dataset name or folder: its corpus is searched.")
@click.option(
    "--questions",
    required=True,
    help="A queries.jsonl file (_id, text per line), or a split of --dataset whose questions are used (its qrels are not).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: checkpoints, then the trained retriever.",
)
@click.option(
    "--student",
    type=click.Choice(["ft", "pt2-dpr", "lora"]),
    default="ft",
    show_default=True,
    help="Two fully trained encoders (the paper), one deep prompt per side, or one LoRA per side.",
)
@click.option(
    "--backbone", default=None, help="Student backbone [default: all-MiniLM-L6-v2; the paper: BERT-base]."
)
@click.option(
    "--pooling",
    type=click.Choice(["cls", "mean"]),
    default=None,
    help="[default: the backbone's own; the paper: cls].",
)
@click.option("--teacher", default=None, help="Frozen seq2seq teacher [default: bigscience/T0_3B].")
@click.option(
    "--top-k", default=32, show_default=True, type=click.IntRange(min=2), help="Passages per question."
)
@click.option(
    "--refresh-every",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Steps between rebuilds of the passage embeddings.",
)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate [default: 2e-5 for ft, 1e-3 pt2-dpr, 5e-4 lora].",
)
@click.option("--teacher-batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--device", default=None, help="torch device (default: the best available).")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --output holds a run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def adapt_art(dataset, questions, output, student, backbone, pooling, teacher, top_k, refresh_every, epochs,
              max_steps, batch_size, learning_rate, teacher_batch_size, checkpoint_every, seed, device, overwrite,
              quiet):  # fmt: skip
    """ART (Sachan et al. 2023): train a dual encoder from unpaired questions, a frozen LM scoring question reconstruction as teacher.

    Resumable: rerun the same command to continue from the newest checkpoint.
    """
    from .data import load_corpus, load_dataset, load_queries, resolve_dataset
    from .encoders.backbone import DEFAULT_BACKBONE
    from .methods.art import ARTConfig, train_art

    config = ARTConfig(
        student=student, backbone=backbone or DEFAULT_BACKBONE, pooling=pooling, teacher=teacher or ARTConfig.teacher,
        top_k=top_k, refresh_every=refresh_every, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        learning_rate=learning_rate, teacher_batch_size=teacher_batch_size, checkpoint_every=checkpoint_every,
        seed=seed, device=device,
    )  # fmt: skip
    check_output_path(output, folder=True, what="--output")
    if quiet:
        _quiet_libraries()
    folder = resolve_dataset(dataset)
    if Path(questions).is_file():
        corpus, question_texts = load_corpus(folder), load_queries(questions)
        source = questions
    elif Path(questions).suffix or "/" in questions:  # meant as a file
        raise click.BadParameter(f"no such questions file: {questions}", param_hint="--questions")
    else:
        data = load_dataset(folder, split=questions)
        corpus, question_texts, source = (
            data.corpus,
            data.queries,
            f"{folder.name}/{questions} (qrels unused)",
        )
    click.echo(
        f"ART: {len(question_texts)} questions from {source}, {len(corpus)} passages -> {output}", err=True
    )
    result = train_art(question_texts, corpus, output, config, dataset_name=folder.name, overwrite=overwrite,
                       show_progress_bar=not quiet)  # fmt: skip
    click.echo(
        f"saved {result}; evaluate with: beir-peft evaluate --model {result} --dataset {dataset}", err=True
    )


# ------------------------------------------------------------------------------------- ddr
@cli.group()
def ddr():
    """DDR (Zhan et al. 2022): domain modules by MLM, one relevance module, assembled per domain."""


@ddr.command("dam")
@click.option(
    "--corpus", "-d", required=True, help="BEIR dataset name or folder whose corpus.jsonl is the MLM text."
)
@click.option(
    "--init",
    "init",
    default=None,
    help="Backbone or DAM folder to start from [default: all-MiniLM-L6-v2]; a target DAM starts from the source DAM.",
)
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--steps", default=20_000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr", "learning_rate", default=2e-5, show_default=True, type=click.FloatRange(min=0, min_open=True)
)
@click.option("--max-seq-length", type=click.IntRange(min=8), help="[default: the backbone's own]")
@click.option("--checkpoint-every", default=1_000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--device", default=None)
@click.option("--quiet", "-q", is_flag=True)
def ddr_dam(
    corpus,
    init,
    output,
    steps,
    batch_size,
    learning_rate,
    max_seq_length,
    checkpoint_every,
    seed,
    device,
    quiet,
):
    """Train a domain adaption module: the whole backbone by masked language modelling on a corpus."""
    from .data import load_corpus, passage_text, resolve_dataset
    from .encoders.backbone import DEFAULT_BACKBONE
    from .methods.ddr import DAMConfig, train_dam

    check_output_path(output, folder=True, what="--output")
    config = DAMConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate, max_seq_length=max_seq_length,
                       checkpoint_every=checkpoint_every, seed=seed, device=device)  # fmt: skip
    if quiet:
        _quiet_libraries()
    folder = resolve_dataset(corpus)
    texts = [passage_text(doc) for doc in load_corpus(folder).values()]
    init = init or DEFAULT_BACKBONE
    click.echo(f"DAM: MLM on {folder.name} ({len(texts)} passages) from {init} -> {output}", err=True)
    train_dam(init, texts, output, config, corpus_name=folder.name, show_progress_bar=not quiet)
    click.echo(f"saved {output}", err=True)


@ddr.command("rem")
@click.option("--dataset", "-d", required=True, help="Source dataset with relevance judgements.")
@click.option("--split", default="train", show_default=True)
@click.option("--dam", required=True, help="The source DAM (frozen while the REM trains).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), help="[default: 2e-5, the paper]"
)
@click.option(
    "--hard-negatives", default=1, show_default=True, type=click.IntRange(min=0), help="Mined by the DAM."
)
@click.option(
    "--margins",
    "margins_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Train by MarginMSE on these teacher margins (qid, pos, neg, margin TSV) instead.",
)
@click.option("--no-lora", is_flag=True, help="REM without LoRA (the paper's Table 5: adapter only).")
@click.option("--no-adapter", is_flag=True, help="REM without the parallel adapter (Table 5: LoRA only).")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Other REM options, e.g. --set rem_lora_r=64.",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--resume", is_flag=True)
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def ddr_rem(dataset, split, dam, output, epochs, max_steps, batch_size, learning_rate, hard_negatives, margins_file, no_lora,
            no_adapter, settings, seed, resume, overwrite, quiet):  # fmt: skip
    """Train the relevance module (LoRA + parallel adapters) on a frozen source DAM; contrastive with hard negatives."""
    from .data import load_dataset
    from .methods.ddr import train_rem
    from .methods.supervised import TrainingConfig

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    check_output_path(output, folder=True, what="--output")
    options = {**_options(settings), "rem_lora": not no_lora, "rem_adapter": not no_adapter}
    config = TrainingConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
                            hard_negatives=0 if margins_file else hard_negatives, seed=seed)  # fmt: skip
    if quiet:
        _quiet_libraries()
    data = load_dataset(dataset, split=split)
    click.echo(f"REM on {dam}: {data.describe()}", err=True)
    folder = train_rem(dam, data, output, config, margins_file=margins_file, resume=resume, overwrite=overwrite,
                       show_progress_bar=not quiet, **options)  # fmt: skip
    click.echo(
        f"saved {folder}; put it on a target DAM with: beir-peft ddr assemble --dam DAM --rem {folder} -o DIR",
        err=True,
    )


@ddr.command("assemble")
@click.option(
    "--dam", required=True, help="The target domain's DAM (or any backbone of the REM's architecture)."
)
@click.option(
    "--rem",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A REM folder from `ddr rem`.",
)
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
def ddr_assemble(dam, rem, output):
    """Put a trained REM on a target DAM: a retriever folder that `beir-peft evaluate` accepts (LoRA merged when loaded)."""
    from .methods.ddr import assemble

    check_output_path(output, folder=True, what="--output")
    folder = assemble(dam, rem, output)
    click.echo(
        f"saved {folder}; evaluate with: beir-peft evaluate --model {folder} --dataset TARGET", err=True
    )


def _os_error_line(exc: OSError) -> str:
    """``Permission denied: /a/b -> /a/c``: the reason and the path(s) an ``OSError`` names."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI, turning user errors into one line and exit status 2
    (an ``OSError`` from outside the package's writers: one line and exit status 1)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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


if __name__ == "__main__":
    sys.exit(main())
