"""``beir-peft evaluate``: retrieve and score one dataset split, or several on one shared backbone."""

from __future__ import annotations

from pathlib import Path

import click

from ..evaluation import DEFAULT_K_VALUES, evaluate_retriever
from ..io import check_output_path
from ..registry import SINGLE_VECTOR, retriever_kind
from ..search import SEARCH_CHOICES, ranks
from ..serving import PLAIN_BACKBONE_MODEL
from . import options
from .common import describe, echo, quiet_libraries

#: shown after a run on the bundled demo dataset
NEXT_DATASETS = ("scifact", "nfcorpus", "fiqa", "arguana", "scidocs")


@click.command()
@options.dataset(
    multiple=True,
    help="BEIR dataset name or folder (default: the bundled demo dataset). Repeat it, each with its own "
    "--model, to evaluate several datasets on one shared backbone.",
)
@options.split("test", help="qrels split to evaluate on.")
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
@options.output(folder=False, help="Write metrics, config, versions and timings as JSON.")
@click.option(
    "--run-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the ranking as a TREC run file.",
)
@click.option(
    "--k-values",
    default=",".join(map(str, DEFAULT_K_VALUES)),
    show_default=True,
    callback=options.k_values_callback,
    help="Cut-offs, comma-separated.",
)
@options.batch_size(options.parameter_default(evaluate_retriever, "batch_size"), help="Encoding batch size.")
@click.option(
    "--search",
    type=click.Choice(SEARCH_CHOICES),
    default="exact",
    show_default=True,
    help="exact|faiss-flat|faiss-hnsw|faiss are for single-vector models (faiss: the --index-factory "
    "index); exact|ann for late interaction "
    "(pt2-colbert, colbert-ft: ann = faiss candidates over token vectors, then exact MaxSim re-ranking).",
)
@click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save (and reuse) the faiss index (late interaction: the token vectors and the ANN index) here.",
)
@click.option(
    "--vectors-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="--search exact, single-vector models: encode the corpus into memory-mapped .npy shards here "
    "(reused for the same model, corpus and settings; a killed run resumes at the missing shards) and "
    "search them in bounded chunks. Under torchrun the shards are split across the processes.",
)
@click.option(
    "--vector-dtype",
    type=click.Choice(["float32", "float16"]),
    help="--vectors-dir: the shards' float type [default: float32].",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    help="--vectors-dir: passages per shard (encoded in memory at a time) [default: the corpus size / 64, "
    "within 256..50000].",
)
@click.option(
    "--candidates-per-token",
    type=click.IntRange(min=1),
    help="--search ann: nearest token vectors per query token (ColBERT's k') [default: from the corpus "
    "size, 5% of the documents over the query's tokens, within 8..100: 9 on SciFact, the authors' 100 from "
    "64K documents].",
)
@click.option(
    "--nprobe",
    type=click.IntRange(min=1),
    help="--search ann: IVF lists visited per query token [default: 32]; --search faiss: per query "
    "[default: faiss' 1].",
)
@click.option(
    "--ef-search",
    type=click.IntRange(min=1),
    help="--search faiss-hnsw, or faiss with an HNSW factory: the search beam width [default: 128].",
)
@click.option(
    "--index-factory",
    help="--search ann or faiss: a faiss index_factory string (inner product), e.g. IVF256,Flat, "
    "IVF256,PQ16, HNSW32 [default: ann: IVF-PQ sized to the corpus; faiss: Flat]. An index that needs "
    "training is trained on a seeded sample of up to 100K corpus vectors.",
)
@click.option(
    "--faiss-gpu",
    is_flag=True,
    help="--search faiss-flat or ann: search the faiss index on all visible GPUs (needs faiss-gpu: "
    "see docs/usage.md for the command that replaces faiss-cpu with it; untested on a GPU here).",
)
@options.device(help="torch device, e.g. cuda:0 (default: the best available).")
@options.dtype()
@options.keep_identical_ids()
@options.quiet()
def evaluate(datasets, split, models, domains_file, output, run_file, k_values, batch_size, search, index_dir,
             vectors_dir, vector_dtype, shard_size, candidates_per_token, nprobe, ef_search, index_factory, faiss_gpu,
             device, dtype, keep_identical_ids, quiet):  # fmt: skip
    """Retrieve and score a dataset split with BEIR's evaluator; print a metrics table.

    --model bm25 evaluates the lexical baseline (bm25s, Elasticsearch's k1=1.2, b=0.75).
    Several --dataset/--model pairs (or --domains FILE) serve every trained folder from one backbone
    and print one table, a row per dataset. Under `torchrun --nproc_per_node N -m beir_peft.cli evaluate`
    exact single-vector search encodes the corpus in shards across the N processes; rank 0 writes.
    """
    ann = dict(candidates_per_token=candidates_per_token, nprobe=nprobe, index_factory=index_factory,
               ef_search=ef_search)  # fmt: skip
    ann_options = {key: value for key, value in ann.items() if value is not None}
    _check_index_options(search, ann_options)
    vector_options = _vector_options(search, vectors_dir, vector_dtype, shard_size)
    _check_outputs(output, run_file, index_dir, vectors_dir)
    search_options = {**_search_options(search, ann_options, faiss_gpu), **vector_options}
    ranks.init_from_env()  # after the checks: no process starts work before every one has passed them
    if quiet:
        quiet_libraries()
    settings = dict(split=split, output=output, k_values=k_values, batch_size=batch_size, search=search,
                    search_options=search_options, device=device, dtype=dtype,
                    keep_identical_ids=keep_identical_ids, quiet=quiet)  # fmt: skip
    if domains_file is not None or len(datasets) > 1 or len(models) > 1:
        one_dataset = {"--run-file": run_file, "--index-dir": index_dir, "--vectors-dir": vectors_dir}
        flag = next((name for name, value in one_dataset.items() if value is not None), None)
        if flag is not None:
            raise click.UsageError(
                f"{flag}: only for one dataset (with several, use --output for the results)"
            )
        _evaluate_domains(_domain_pairs(datasets, models, domains_file), **settings)
    else:
        dataset, model = (datasets or (None,))[0], (models or (None,))[0]
        _evaluate_one(dataset, model, run_file=run_file, index_dir=index_dir, **settings)


#: the searches each index option is for
_INDEX_OPTION_SEARCHES = {
    "candidates_per_token": ("ann",),
    "nprobe": ("ann", "faiss"),
    "index_factory": ("ann", "faiss"),
    "ef_search": ("faiss-hnsw", "faiss"),
}


def _check_index_options(search: str, options: dict) -> None:
    """Refuse an index option the chosen ``--search`` does not take (one line naming the flags)."""
    wrong = [key for key in options if search not in _INDEX_OPTION_SEARCHES[key]]
    if wrong:
        flags = ", ".join("--" + key.replace("_", "-") for key in wrong)
        takes = sorted({s for key in wrong for s in _INDEX_OPTION_SEARCHES[key]})
        raise click.UsageError(f"{flags}: only for --search {' or '.join(takes)}")


def _vector_options(
    search: str, vectors_dir: Path | None, vector_dtype: str | None, shard_size: int | None
) -> dict:
    """The sharded exact search's options (``vectors_dir`` as a string, for the result JSON)."""
    given = {"vectors_dir": vectors_dir, "vector_dtype": vector_dtype, "shard_size": shard_size}
    options = {key: value for key, value in given.items() if value is not None}
    if options and (search != "exact" or vectors_dir is None):
        flags = ", ".join("--" + key.replace("_", "-") for key in options)
        raise click.UsageError(f"{flags}: only for --search exact with --vectors-dir")
    return {**options, "vectors_dir": str(vectors_dir)} if options else {}


def _search_options(search: str, ann_options: dict, faiss_gpu: bool) -> dict:
    """The searcher's options: the ANN options, and ``use_gpu`` for ``--faiss-gpu``."""
    if faiss_gpu:
        if search not in ("faiss-flat", "faiss", "ann"):
            raise click.UsageError(
                "--faiss-gpu: only for --search faiss-flat or ann, or faiss (faiss-gpu has no HNSW)"
            )
        return {**ann_options, "use_gpu": True}
    return dict(ann_options)


def _check_outputs(
    output: Path | None, run_file: Path | None, index_dir: Path | None, vectors_dir: Path | None
) -> None:
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
    if vectors_dir is not None:  # written to even when it holds shards (a resumed encoding)
        check_output_path(vectors_dir, folder=True, what="--vectors-dir")


def _evaluate_one(dataset, model, *, split, output, run_file, index_dir, k_values, batch_size, search,
                  search_options, device, dtype, keep_identical_ids, quiet) -> None:  # fmt: skip
    from ..data import DEMO_DATASET, load_dataset
    from ..evaluation import evaluate_retriever, format_table, write_result_json, write_run_file
    from ..retrievers import load_retriever

    main = ranks.is_main()
    data = load_dataset(dataset or DEMO_DATASET, split=split)
    retriever = load_retriever(model, device=device or _rank_device(), dtype=dtype)
    if main:
        echo(f"{data.describe()} | model: {describe(retriever)}")
    if ranks.world_size() > 1 and search == "exact" and retriever_kind(retriever) == SINGLE_VECTOR:
        search_options = {**search_options, "sharded": True}  # encode the shards across the processes
    result = evaluate_retriever(
        retriever, data.corpus, data.queries, data.qrels, k_values=k_values, search=search, batch_size=batch_size,
        ignore_identical_ids=not keep_identical_ids, index_dir=index_dir, show_progress_bar=not quiet and main,
        search_options=search_options,
        config={"dataset": data.name, "dataset_path": str(data.path), "split": split, "model": model or "default",
                **({"world_size": ranks.world_size()} if ranks.world_size() > 1 else {})},
    )  # fmt: skip
    if not main:  # every process has the same results; rank 0 reports and writes them
        return
    click.echo(format_table(result.metrics, k_values))
    echo(f"{len(data.queries)} queries, {len(data.corpus)} documents, {result.timings['total']:.1f} s")
    if run_file is not None:  # before the JSON: a result file means its run file is complete
        write_run_file(result.results, run_file)
        echo(f"wrote {run_file}")
    if output is not None:
        write_result_json(result, output)
        echo(f"wrote {output}")
    if dataset is None:
        echo(
            "This was the bundled demo dataset (a smoke test, not a benchmark). Try a real one next: "
            + ", ".join(f"--dataset {name}" for name in NEXT_DATASETS[:3])
            + " (downloaded from BEIR once, or set BEIR_PEFT_DATA to a folder of BEIR datasets)."
        )


def _rank_device() -> str | None:
    """Under torchrun on GPUs, this process' own GPU (``cuda:LOCAL_RANK``); else the default."""
    import torch

    if ranks.world_size() > 1 and torch.cuda.is_available():
        return f"cuda:{ranks.local_device_index()}"
    return None


def _domain_pairs(
    datasets: tuple[str, ...], models: tuple[str, ...], domains_file: Path | None
) -> list[tuple[str, str | None]]:
    """``(dataset, folder or None)`` pairs from repeated --dataset/--model options and/or --domains."""
    from ..serving import read_domains_file

    if len(datasets) != len(models):
        raise click.UsageError(
            f"several datasets: give one --model per --dataset, in order (got {len(datasets)} --dataset, "
            f"{len(models)} --model), or a --domains FILE"
        )
    pairs: list[tuple[str, str | None]] = [
        (d, None if m.lower() == PLAIN_BACKBONE_MODEL else m) for d, m in zip(datasets, models, strict=True)
    ]
    if domains_file is not None:
        pairs += read_domains_file(domains_file)
    seen = set()
    for dataset, _ in pairs:
        if dataset in seen:
            raise click.UsageError(f"dataset {dataset!r} is given twice; each dataset gets one model")
        seen.add(dataset)
    return pairs


def _evaluate_domains(pairs: list[tuple[str, str | None]], *, split, output, k_values, batch_size, search,
                      search_options, device, dtype, keep_identical_ids, quiet) -> None:  # fmt: skip
    """Evaluate every (dataset, folder) pair on one shared backbone (``beir_peft.load_domains``); one table."""
    from ..data import load_dataset
    from ..evaluation import evaluate_retriever, format_domains_table
    from ..io import write_json_atomic
    from ..serving import load_domains

    loaded = [(load_dataset(dataset, split=split), folder) for dataset, folder in pairs]
    names = [data.name for data, _ in loaded]
    if len(set(names)) != len(names):
        raise click.UsageError(f"two of the datasets are both named {names!r}; give each dataset once")
    served = load_domains({data.name: folder for data, folder in loaded}, device=device)
    served.encoding_dtype = dtype
    for name in served:  # a late-interaction domain encodes through its own retriever
        if served.kind(name) != SINGLE_VECTOR:
            served[name].encoding_dtype = dtype
    echo(f"{len(served)} domains on one backbone: {', '.join(served)}")
    results = {}
    for data, folder in loaded:
        retriever = served[data.name]
        echo(f"{data.describe()} | model: {describe(retriever)}")
        results[data.name] = evaluate_retriever(
            retriever, data.corpus, data.queries, data.qrels, k_values=k_values, search=search,
            batch_size=batch_size, ignore_identical_ids=not keep_identical_ids, show_progress_bar=not quiet,
            search_options=search_options,
            config={"dataset": data.name, "dataset_path": str(data.path), "split": split,
                    "model": str(folder) if folder is not None else PLAIN_BACKBONE_MODEL},
        )  # fmt: skip
    if not ranks.is_main():  # under torchrun every process searched alike; rank 0 reports
        return
    labels = {name: results[name].config["model"] for name in results}
    click.echo(format_domains_table({n: r.metrics for n, r in results.items()}, labels, k_values))
    if output is not None:
        write_json_atomic(output, {"served": True, "datasets": {n: r.to_json() for n, r in results.items()}})
        echo(f"wrote {output}")
