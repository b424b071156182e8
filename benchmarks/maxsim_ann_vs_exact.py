"""Late-interaction search: approximate (faiss candidates + MaxSim) against exact MaxSim.

What is measured, for one ColBERT-style model (a saved ``pt2-colbert``/``colbert-ft`` folder) on
one BEIR split (default SciFact test), with both modes sharing one set of stored token vectors:

* quality: nDCG@10 and Recall@100 of each mode over all queries (top 1000, BEIR's evaluator,
  identical ids dropped), their difference, and how many of exact's top 10 ANN also returns;
* latency: seconds per query for ``MaxSimSearch.search(corpus, {qid: query}, top_k)`` (query
  encoding, candidate generation, scoring), one query at a time, the two modes interleaved query by
  query (ABAB..., then BABA...) so drift hits both alike; median, mean and 95th percentile, and the
  ratio exact / ANN of the medians;
* storage: bytes per document of the float16 token vectors (both modes), the faiss index and the
  token -> document map (ANN only);
* peak memory: the peak resident memory of a fresh process that loads the model and the stored
  index and searches every query in one mode (``baseline``: the same process that only loads and
  encodes the queries); file-backed pages of the memory-mapped vectors count when they are touched.

Targets (issue: PT2-ColBERT): ANN nDCG@10 within 0.005 of exact, and ANN at least 10x faster per
query. One-off costs (encoding the corpus, training the IVF-PQ index) are reported, not compared.

Example::

    BEIR_PEFT_DATA=../shared/datasets python benchmarks/maxsim_ann_vs_exact.py --model runs/pt2-colbert
    python benchmarks/maxsim_ann_vs_exact.py --dataset demo --latency-queries 4 --output /tmp/ann.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, median, peak_rss_mb, pick_device, print_table, set_threads  # noqa: E402

import beir_peft  # noqa: E402
from beir_peft.data import load_dataset  # noqa: E402
from beir_peft.evaluation import evaluate_run  # noqa: E402
from beir_peft.io import write_json_atomic  # noqa: E402
from beir_peft.search.maxsim import (  # noqa: E402
    ANN_INDEX_FILE,
    DOCLENS_FILE,
    TOKEN_DOCS_FILE,
    VECTORS_FILE,
    MaxSimSearch,
)

TARGET_NDCG_GAP = 0.005
TARGET_SPEEDUP = 10.0
MODES = ("exact", "ann")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="saved pt2-colbert/colbert-ft folder (default: an untrained PT2ColBERT)"
    )
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--top-k", type=int, default=100, help="documents per query in the latency runs")
    parser.add_argument("--latency-queries", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--candidates-per-token", type=int, default=100)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--index-factory", default=None, help="faiss index_factory (default: IVF-PQ)")
    parser.add_argument("--index-dir", type=Path, help="keep the token vectors and index here (reused)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory subprocesses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "maxsim_ann_vs_exact.json"
    )
    return parser.parse_args(argv)


def searcher(model, mode: str, index_dir: Path, args) -> MaxSimSearch:
    ann = {}
    if mode == "ann":
        ann = {
            "candidates_per_token": args.candidates_per_token,
            "nprobe": args.nprobe,
            "index_factory": args.index_factory,
        }
    return MaxSimSearch(
        model, mode=mode, batch_size=args.batch_size, index_dir=index_dir, show_progress_bar=False, **ann
    )


def quiet_loading() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def memory_probe(mode: str, model_path: str, index_dir: str, args_dict: dict, queue) -> None:
    """In a fresh process: load, then search every query in ``mode`` (or only encode them); report peak RSS."""
    quiet_loading()
    set_threads(args_dict["threads"])
    args = argparse.Namespace(**args_dict)
    data = load_dataset(args.dataset, split=args.split)
    model = beir_peft.load(model_path, device=args.device)
    if mode == "baseline":
        model.encode_query_tokens(list(data.queries.values()), batch_size=args.batch_size)
        MaxSimSearch.read_meta(index_dir)
    else:
        searcher(model, mode, Path(index_dir), args).search(data.corpus, data.queries, top_k=1000)
    queue.put(peak_rss_mb())


def peak_memory(mode: str, model_path: str, index_dir: Path, args) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=memory_probe, args=(mode, model_path, str(index_dir), vars(args), queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the {mode} memory probe failed with exit code {process.exitcode}")
    return queue.get()


def latency_summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "median_s": median(seconds),
        "mean_s": statistics.fmean(seconds),
        "p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "queries": len(seconds),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet_loading()
    set_threads(args.threads)
    device = pick_device(args.device)
    args.device = str(device)
    info = machine_info(device)
    data = load_dataset(args.dataset, split=args.split)
    work = Path(tempfile.mkdtemp(prefix="maxsim_bench_"))
    try:
        model_path = args.model
        if model_path is None:  # an untrained model, saved so the memory probes can load it
            model_path = str(work / "model")
            beir_peft.PT2ColBERT().save(model_path)
        model = beir_peft.load(model_path, device=str(device))
        index_dir = args.index_dir or work / "index"
        searchers = {mode: searcher(model, mode, index_dir, args) for mode in MODES}

        # one-off costs: token vectors (shared by both modes), then the ANN index over them
        first = {next(iter(data.queries)): next(iter(data.queries.values()))}
        one_off = {}
        for mode in MODES:
            started = time.perf_counter()
            searchers[mode].search(data.corpus, first, top_k=1)
            one_off[mode] = time.perf_counter() - started
        print(
            f"encoding + exact warm-up {one_off['exact']:.1f} s; ANN index {one_off['ann']:.1f} s", flush=True
        )

        # quality over all queries
        quality, runs = {}, {}
        for mode in MODES:
            runs[mode] = searchers[mode].search(data.corpus, data.queries, top_k=1000)
            metrics = evaluate_run(data.qrels, runs[mode], k_values=[10, 100])
            quality[mode] = {"NDCG@10": metrics["NDCG@10"], "Recall@100": metrics["Recall@100"]}
        overlap = statistics.fmean(
            len(set(list(runs["exact"][q])[:10]) & set(list(runs["ann"][q])[:10])) / 10 for q in data.queries
        )
        returned = [len(hits) for hits in runs["ann"].values()]

        # latency, one query at a time, interleaved
        query_ids = list(data.queries)
        random.Random(args.seed).shuffle(query_ids)
        query_ids = query_ids[: args.latency_queries]
        seconds = {mode: [] for mode in MODES}
        for index, qid in enumerate(query_ids):
            order = MODES if index % 2 == 0 else MODES[::-1]
            for mode in order:
                started = time.perf_counter()
                searchers[mode].search(data.corpus, {qid: data.queries[qid]}, top_k=args.top_k)
                seconds[mode].append(time.perf_counter() - started)
        latency = {mode: latency_summary(seconds[mode]) for mode in MODES}
        speedup = latency["exact"]["median_s"] / latency["ann"]["median_s"]

        num_docs = len(data.corpus)
        sizes = {name: os.path.getsize(index_dir / name) for name in (VECTORS_FILE, DOCLENS_FILE)}
        sizes.update({name: os.path.getsize(index_dir / name) for name in (ANN_INDEX_FILE, TOKEN_DOCS_FILE)})
        per_doc = {name: size / num_docs for name, size in sizes.items()}
        ann_meta = MaxSimSearch.read_ann_meta(index_dir)
        meta = MaxSimSearch.read_meta(index_dir)

        memory = None
        if not args.skip_memory:
            memory = {mode: peak_memory(mode, model_path, index_dir, args) for mode in ("baseline", *MODES)}

        gap = quality["exact"]["NDCG@10"] - quality["ann"]["NDCG@10"]
        result = {
            "benchmark": "maxsim_ann_vs_exact",
            "model": str(args.model or "untrained PT2ColBERT"),
            "model_config": model.config.to_dict(),
            "dataset": data.name,
            "split": args.split,
            "num_docs": num_docs,
            "num_queries": len(data.queries),
            "num_token_vectors": meta["num_tokens"],
            "ann_settings": {
                "index_factory": ann_meta["index_factory"],
                "candidates_per_token": args.candidates_per_token,
                "nprobe": args.nprobe,
                "train_size": ann_meta.get("train_size"),
            },
            "quality": quality,
            "ndcg10_gap_exact_minus_ann": gap,
            "top10_overlap_with_exact": overlap,
            "ann_documents_returned_at_top1000": {
                "median": median(returned),
                "min": min(returned),
                "max": max(returned),
            },
            "latency_top_k": args.top_k,
            "latency": latency,
            "speedup_exact_over_ann": speedup,
            "one_off_seconds": {
                "encode_corpus_and_first_exact_query": one_off["exact"],
                "ann_index": one_off["ann"],
            },
            "bytes": sizes,
            "bytes_per_doc": {
                **per_doc,
                "exact_total": per_doc[VECTORS_FILE] + per_doc[DOCLENS_FILE],
                "ann_total": sum(per_doc.values()),
            },
            "peak_rss_mb": memory,
            "targets": {
                "ndcg10_gap_at_most": TARGET_NDCG_GAP,
                "speedup_at_least": TARGET_SPEEDUP,
                "ndcg10_gap_met": gap <= TARGET_NDCG_GAP,
                "speedup_met": speedup >= TARGET_SPEEDUP,
            },
            "machine": {**info, "load_average_at_end": list(os.getloadavg())},
        }
        write_json_atomic(args.output, result)
    finally:
        if args.index_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.model is None:
            shutil.rmtree(work / "model", ignore_errors=True)

    rows = []
    for mode in MODES:
        rows.append(
            [
                mode,
                f"{quality[mode]['NDCG@10']:.4f}",
                f"{quality[mode]['Recall@100']:.4f}",
                f"{1000 * latency[mode]['median_s']:.1f}",
                f"{1000 * latency[mode]['p95_s']:.1f}",
                f"{result['bytes_per_doc'][mode + '_total']:.0f}",
                f"{memory[mode]:.0f}" if memory else "-",
            ]
        )
    print_table(["mode", "nDCG@10", "R@100", "median ms/q", "p95 ms/q", "bytes/doc", "peak RSS MiB"], rows)
    print(
        f"nDCG@10 gap {gap:+.4f} (target <= {TARGET_NDCG_GAP}); speedup {speedup:.1f}x "
        f"(target >= {TARGET_SPEEDUP:g}x); top-10 overlap {overlap:.3f}; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
