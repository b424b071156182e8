"""Cost growth of ``evaluate`` (encode + exact search) with the corpus size: today's path vs the sharded one.

What is measured, for each size in ``--sizes`` (default 10K, 30K, 100K passages) and each path:

* ``old``: ``evaluate_retriever(..., search="exact")``, BEIR's exact search (``ExactSearch``), the
  default of ``beir-peft evaluate``;
* ``new``: the same with ``search_options={"vectors_dir": ...}`` (``ShardedExactSearch``): the
  corpus encoded to ``.npy`` shards, searched memory-mapped in bounded chunks.

The corpus is built from real passages (``--dataset``, default SciFact's 5,183), repeated and
perturbed to size (each copy after the first has its copy number before the title and one of its
first ten words dropped, so no two passages are equal even in their first tokens); the queries are the
dataset's test queries (``--num-queries``).
The model is one (default all-MiniLM-L6-v2) at a short ``--max-seq-length`` (32) so that 100K
passages take minutes on 2 cores. Every (size, path) runs in its own process, so its peak memory is
its own: reported are the wall time of the evaluation, the resident memory before it (model and
corpus loaded), the peak during it (``VmHWM`` after a reset), the bytes of the memory-mapped
vectors (new path), and ``search_peak_mb``: peak minus memory before minus mapped vectors, what
the evaluation itself holds. Over the sizes: a least-squares line of wall time against passages
(slope, intercept, R^2) per path.

Example (the full run: tens of minutes on 2 cores; the JSON goes to benchmarks/results/)::

    BEIR_PEFT_DATA=../shared/datasets OMP_NUM_THREADS=2 python benchmarks/corpus_scaling.py
    python benchmarks/corpus_scaling.py --sizes 2000 --num-queries 50 --output /tmp/scaling.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    current_rss_mb,
    machine_info,
    peak_rss_since_reset_mb,
    print_table,
    reset_peak_rss,
    set_threads,
)

from beir_peft.io import write_json_atomic  # noqa: E402

PATHS = ("old", "new")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "corpus_scaling.json"


def build_corpus(passages: list[tuple[str, dict]], size: int, seed: int = 0) -> dict[str, dict]:
    """``size`` passages: the real ones under their own ids (so the qrels still judge them), then
    copies under ``"<id>-copy<N>"``, each with its copy number before the title and one seeded word
    of the first ten dropped: every copy differs from the original in its first tokens, so no two
    passages tie at a short ``max_seq_length`` (tied scores would make the two paths' nDCG differ
    by their tie-breaking alone)."""
    rng = random.Random(seed)
    corpus = {}
    for i in range(size):
        doc_id, doc = passages[i % len(passages)]
        copy = i // len(passages)
        title, text = doc.get("title") or "", doc.get("text") or ""
        if copy:
            words = text.split()
            if len(words) > 1:
                del words[rng.randrange(min(10, len(words)))]
            title, text = f"({copy}) {title}", " ".join(words)
        corpus[f"{doc_id}-copy{copy}" if copy else doc_id] = {"title": title, "text": text}
    return corpus


def run_one(args: argparse.Namespace, size: int, path: str) -> dict:
    """One evaluation in this process: ``{"wall_s", "rss_before_mb", "peak_mb", "vectors_mb", ...}``."""
    from beir_peft.data import load_dataset
    from beir_peft.evaluation import evaluate_retriever
    from beir_peft.models.loading import load_model
    from beir_peft.search.vector_shards import VectorShards

    set_threads(args.threads)
    data = load_dataset(args.dataset, split="test")
    passages = [(doc_id, data.corpus[doc_id]) for doc_id in sorted(data.corpus)]
    corpus = build_corpus(passages, size)
    query_ids = sorted(data.queries)[: args.num_queries]
    queries = {qid: data.queries[qid] for qid in query_ids}
    qrels = {qid: data.qrels[qid] for qid in query_ids if qid in data.qrels}
    model = load_model(args.model)
    model.model.max_seq_length = args.max_seq_length
    with tempfile.TemporaryDirectory(prefix="corpus_scaling_") as folder:
        options = None
        if path == "new":
            options = {"vectors_dir": folder, **({"shard_size": args.shard_size} if args.shard_size else {})}
        rss_before = current_rss_mb()
        reset_peak_rss()
        started = time.perf_counter()
        result = evaluate_retriever(model, corpus, queries, qrels, k_values=[10], batch_size=args.batch_size,
                                    show_progress_bar=False, search_options=options)  # fmt: skip
        wall = time.perf_counter() - started
        peak = peak_rss_since_reset_mb()
        shards = VectorShards(folder) if path == "new" else None
        vectors_mb = shards.nbytes() / 2**20 if shards else 0.0
        shard_size = shards.meta["shard_size"] if shards else None
    return {
        "size": size,
        "path": path,
        "wall_s": round(wall, 2),
        "passages_per_s": round(size / wall, 1),
        "rss_before_mb": rss_before,
        "peak_mb": peak,
        "vectors_mb": round(vectors_mb, 1),
        "shard_size": shard_size,
        "search_peak_mb": round(peak - (rss_before or 0.0) - vectors_mb, 1),
        "ndcg@10": round(result.metrics["NDCG@10"], 4),
    }


def linear_fit(sizes: list[int], seconds: list[float]) -> dict:
    """Least-squares ``seconds = slope * size + intercept`` and its R^2 (``None`` for fewer than 2 sizes)."""
    if len(sizes) < 2:
        return {"slope_s_per_1k": None, "intercept_s": None, "r2": None}
    x, y = np.asarray(sizes, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return {
        "slope_s_per_1k": round(float(slope) * 1000, 3),
        "intercept_s": round(float(intercept), 2),
        "r2": round(r2, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,30000,100000", help="corpus sizes, comma-separated")
    parser.add_argument("--paths", default="old,new", help="old (ExactSearch), new (sharded), or both")
    parser.add_argument("--dataset", default="scifact", help="where the real passages and queries come from")
    parser.add_argument("--model", default=None, help="the model [default: all-MiniLM-L6-v2]")
    parser.add_argument("--num-queries", type=int, default=300)
    parser.add_argument("--max-seq-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=None,
                        help="new path: passages per shard [default: the package's, from the corpus size]")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement, in its own process, as JSON on the last line of stdout
        print(json.dumps(run_one(args, int(args.child[0]), args.child[1])))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    paths = [p for p in args.paths.split(",") if p]
    if not set(paths) <= set(PATHS):
        parser.error(f"--paths: choose from {PATHS}")
    runs = []
    for size in sizes:
        for path in paths:
            print(f"size {size}, path {path} ...", file=sys.stderr, flush=True)
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", str(size), path],
                                  check=True, capture_output=True, text=True)  # fmt: skip
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    fits = {path: linear_fit([r["size"] for r in runs if r["path"] == path],
                             [r["wall_s"] for r in runs if r["path"] == path]) for path in paths}  # fmt: skip
    result = {
        "benchmark": "corpus_scaling",
        "settings": {key: value for key, value in vars(args).items() if key not in ("child", "output")},
        "machine": machine_info(torch.device("cpu")),
        "runs": runs,
        "wall_time_fit": fits,
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, result)
    headers = [
        "size",
        "path",
        "wall s",
        "passages/s",
        "rss before MiB",
        "peak MiB",
        "vectors MiB",
        "search MiB",
    ]
    rows = [[r["size"], r["path"], r["wall_s"], r["passages_per_s"], r["rss_before_mb"], r["peak_mb"],
             r["vectors_mb"], r["search_peak_mb"]] for r in runs]  # fmt: skip
    print_table(headers, rows)
    for path, fit in fits.items():
        print(
            f"{path}: wall = {fit['slope_s_per_1k']} s per 1K passages + {fit['intercept_s']} s (R^2 {fit['r2']})"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
