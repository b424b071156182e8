"""Late-interaction search: approximate (faiss candidates + MaxSim) against exact MaxSim.

What is measured, for one ColBERT-style model (a saved ``pt2-colbert``/``colbert-ft`` folder) on
one BEIR split (default SciFact test), with both modes sharing one set of stored token vectors:

* quality: nDCG@10 and Recall@100 of each mode over all queries (top 1000, BEIR's evaluator,
  identical ids dropped), their difference, and how many of exact's top 10 ANN also returns;
* latency, one query at a time: the query is encoded once (timed: ``encode-only``), then each
  variant ranks those vectors (``MaxSimSearch.rank``: candidate generation and scoring), the
  variants interleaved query by query (ABC..., then ...CBA) so drift hits all alike. Reported per
  variant: median, mean and 95th percentile of the search alone and of end to end (encoding +
  search), and the ratio exact / ANN of the medians for both;
* ANN variants: one per ``--candidates-per-token`` value (ColBERT's k'; default auto, 10, 32,
  100; ``auto`` is the package's default, k' chosen from the corpus size), all over the same faiss
  index;
* storage: bytes per document of the float16 token vectors (both modes), the faiss index and the
  token -> document map (ANN only);
* peak memory: in a fresh process per variant that loads the model and the stored index, the peak
  resident memory *while it searches every query* (the peak is reset after loading, Linux
  ``clear_refs``), and its resident memory before searching; file-backed pages of the
  memory-mapped vectors count when they are touched.

Targets (issue: PT2-ColBERT): ANN nDCG@10 within 0.005 of exact, and ANN at least 10x faster per
query. One-off costs (encoding the corpus, training the IVF-PQ index) are reported, not compared.
Small ops suffer badly from CPU oversubscription (torch's threads spinning against another busy
process): run it on a quiet machine, or pass ``--threads``.

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

from _common import (  # noqa: E402
    current_rss_mb,
    machine_info,
    median,
    peak_rss_since_reset_mb,
    pick_device,
    print_table,
    reset_peak_rss,
    set_threads,
)

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
EXACT, ENCODE = "exact", "encode-only"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="saved pt2-colbert/colbert-ft folder (default: an untrained PT2ColBERT)"
    )
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--top-k", type=int, default=100, help="documents per query in the latency runs")
    parser.add_argument("--latency-queries", type=int, default=100, help="queries timed one at a time")
    parser.add_argument(
        "--candidates-per-token",
        default="auto,10,32,100",
        help="comma-separated k' values, one ANN variant each (auto: the default chosen from the corpus size)",
    )
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


def variant_names(args) -> list[str]:
    return [EXACT] + [f"ann-k{k}" for k in ks(args)]


AUTO = "auto"


def ks(args) -> list[int | str]:
    values = [k.strip() for k in str(args.candidates_per_token).split(",") if k.strip()]
    return [k if k == AUTO else int(k) for k in values]


def searcher(model, variant: str, index_dir: Path, args) -> MaxSimSearch:
    ann = {}
    if variant != EXACT:
        k = variant.removeprefix("ann-k")
        ann = {"candidates_per_token": None if k == AUTO else int(k), "nprobe": args.nprobe,
               "index_factory": args.index_factory}  # fmt: skip
    return MaxSimSearch(
        model,
        mode="exact" if variant == EXACT else "ann",
        batch_size=args.batch_size,
        index_dir=index_dir,
        show_progress_bar=False,
        **ann,
    )


def quiet_loading() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def memory_probe(variant: str, model_path: str, index_dir: str, args_dict: dict, queue) -> None:
    """In a fresh process: load, reset the peak, search every query in ``variant``; report the memory."""
    quiet_loading()
    set_threads(args_dict["threads"])
    args = argparse.Namespace(**args_dict)
    data = load_dataset(args.dataset, split=args.split)
    model = beir_peft.load(model_path, device=args.device)
    search = searcher(model, variant, Path(index_dir), args)
    model.encode_query_tokens(["warm up"], batch_size=1)
    before = current_rss_mb()
    reset = reset_peak_rss()
    search.search(data.corpus, data.queries, top_k=1000)
    queue.put(
        {"rss_before_search_mb": before, "peak_during_search_mb": peak_rss_since_reset_mb(), "reset": reset}
    )


def peak_memory(variant: str, model_path: str, index_dir: Path, args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=memory_probe, args=(variant, model_path, str(index_dir), vars(args), queue)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the {variant} memory probe failed with exit code {process.exitcode}")
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
        variants = variant_names(args)
        searchers = {name: searcher(model, name, index_dir, args) for name in variants}

        # one-off costs: token vectors (shared by every variant), then the ANN index over them
        first = {next(iter(data.queries)): next(iter(data.queries.values()))}
        one_off = {}
        for name in (EXACT, variants[1]):
            started = time.perf_counter()
            searchers[name].search(data.corpus, first, top_k=1)
            one_off[name] = time.perf_counter() - started
        print(
            f"encoding + exact warm-up {one_off[EXACT]:.1f} s; ANN index {one_off[variants[1]]:.1f} s",
            flush=True,
        )

        # quality over all queries
        quality, runs = {}, {}
        for name in variants:
            runs[name] = searchers[name].search(data.corpus, data.queries, top_k=1000)
            metrics = evaluate_run(data.qrels, runs[name], k_values=[10, 100])
            quality[name] = {"NDCG@10": metrics["NDCG@10"], "Recall@100": metrics["Recall@100"]}
            if name != EXACT:
                quality[name]["top10_overlap_with_exact"] = statistics.fmean(
                    len(set(list(runs[EXACT][q])[:10]) & set(list(runs[name][q])[:10])) / 10
                    for q in data.queries
                )
                returned = [len(hits) for hits in runs[name].values()]
                quality[name]["candidates_at_top1000"] = {"median": median(returned), "max": max(returned)}

        # latency, one query at a time: the query encoded once (timed), then every variant's search of
        # those vectors (MaxSimSearch.rank), interleaved; end to end = encoding + search, per query
        query_ids = list(data.queries)
        random.Random(args.seed).shuffle(query_ids)
        query_ids = query_ids[: args.latency_queries]
        search_seconds = {name: [] for name in variants}
        encode_seconds = []
        for index, qid in enumerate(query_ids):
            started = time.perf_counter()
            q_vectors, q_mask = model.encode_query_tokens([data.queries[qid]], batch_size=1)
            encode_seconds.append(time.perf_counter() - started)
            for name in variants if index % 2 == 0 else variants[::-1]:
                started = time.perf_counter()
                searchers[name].rank(q_vectors, q_mask, args.top_k)
                search_seconds[name].append(time.perf_counter() - started)
        latency = {ENCODE: latency_summary(encode_seconds)}
        for name in variants:
            latency[name] = {
                "search": latency_summary(search_seconds[name]),
                "end_to_end": latency_summary(
                    [e + t for e, t in zip(encode_seconds, search_seconds[name], strict=True)]
                ),
            }
        speedup = {
            name: {
                part: latency[EXACT][part]["median_s"] / latency[name][part]["median_s"]
                for part in ("end_to_end", "search")
            }
            for name in variants[1:]
        }

        num_docs = len(data.corpus)
        sizes = {name: os.path.getsize(index_dir / name) for name in (VECTORS_FILE, DOCLENS_FILE)}
        sizes.update({name: os.path.getsize(index_dir / name) for name in (ANN_INDEX_FILE, TOKEN_DOCS_FILE)})
        per_doc = {name: size / num_docs for name, size in sizes.items()}
        ann_meta = MaxSimSearch.read_ann_meta(index_dir)
        meta = MaxSimSearch.read_meta(index_dir)

        memory = None
        if not args.skip_memory:
            memory = {name: peak_memory(name, model_path, index_dir, args) for name in variants}

        gaps = {name: quality[EXACT]["NDCG@10"] - quality[name]["NDCG@10"] for name in variants[1:]}
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
                "candidates_per_token": ks(args),
                "auto_resolves_to": {
                    name: searchers[name].resolved_candidates_per_token() for name in variants[1:]
                },
                "nprobe": args.nprobe,
                "train_size": ann_meta.get("train_size"),
            },
            "quality": quality,
            "ndcg10_gap_exact_minus_ann": gaps,
            "latency_top_k": args.top_k,
            "latency": latency,
            "speedup_exact_over_ann": speedup,
            "one_off_seconds": {
                "encode_corpus_and_first_exact_query": one_off[EXACT],
                "ann_index": one_off[variants[1]],
            },
            "bytes": sizes,
            "bytes_per_doc": {
                **per_doc,
                "exact_total": per_doc[VECTORS_FILE] + per_doc[DOCLENS_FILE],
                "ann_total": sum(per_doc.values()),
            },
            "memory_mb": memory,
            "targets": {
                "ndcg10_gap_at_most": TARGET_NDCG_GAP,
                "speedup_at_least": TARGET_SPEEDUP,
                **{
                    f"met_by_{part}": [
                        name
                        for name in variants[1:]
                        if gaps[name] <= TARGET_NDCG_GAP and speedup[name][part] >= TARGET_SPEEDUP
                    ]
                    for part in ("search", "end_to_end")
                },
            },  # fmt: skip
            "machine": {**info, "load_average_at_end": list(os.getloadavg())},
        }
        write_json_atomic(args.output, result)
    finally:
        if args.index_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.model is None:
            shutil.rmtree(work / "model", ignore_errors=True)

    rows = []
    for name in [ENCODE, *variants]:
        q = quality.get(name, {})
        end_to_end = latency[name] if name == ENCODE else latency[name]["end_to_end"]
        rows.append(
            [
                name,
                f"{q['NDCG@10']:.4f}" if q else "-",
                f"{q['Recall@100']:.4f}" if q else "-",
                f"{1000 * end_to_end['median_s']:.1f}",
                f"{1000 * latency[name]['search']['median_s']:.1f}" if name != ENCODE else "-",
                f"{speedup[name]['end_to_end']:.1f}x / {speedup[name]['search']:.1f}x"
                if name in speedup
                else "-",
                f"{memory[name]['peak_during_search_mb']:.0f}" if memory and name in memory else "-",
            ]
        )
    print_table(
        [
            "variant",
            "nDCG@10",
            "R@100",
            "ms/q end to end",
            "ms/q search",
            "speedup (end to end / search)",
            "peak MiB",
        ],
        rows,
    )
    print(f"bytes/doc: exact {result['bytes_per_doc']['exact_total']:.0f}, ann {result['bytes_per_doc']['ann_total']:.0f}; "
          f"targets met (search alone): {result['targets']['met_by_search'] or 'none'}; "
          f"(end to end): {result['targets']['met_by_end_to_end'] or 'none'}; wrote {args.output}")  # fmt: skip


if __name__ == "__main__":
    main()
