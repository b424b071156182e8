"""Corpus-encoding throughput of PT2-DPR against stock sentence-transformers on the same backbone.

What is measured: documents per second when encoding ``--num-docs`` passages of a BEIR corpus
(default: SciFact, ``title + " " + text`` as BEIR joins them) with batch size ``--batch-size``,
in one process, on one device:

* ``stock``: ``SentenceTransformer.encode(texts, batch_size=B)`` on the backbone as
  ``beir_peft.encoders.backbone.load_backbone()`` loads it (default all-MiniLM-L6-v2);
* ``pt2-dpr``: ``PT2DPR().encode_corpus(docs, batch_size=B)``, the package's own BEIR path through
  the passage-side deep prompt (default recipe: gated prefix attention, ``gate=True``);
* ``pt2-dpr-joint``: the same with ``PT2DPR(gate=False)``, the paper's form (one softmax over
  prefix and tokens), whose attention costs differ.

The retrievers are untrained (the prompt's values do not change its cost). Every variant is
warmed up once on a small slice, then the variants run in interleaved order for ``--repeats``
rounds (ABC, CBA, ...), so slow drift (thermal, other load) hits all of them alike. Reported per
variant: median docs/second over the rounds and its ratio to ``stock``.

Target: PT2-DPR (default recipe) encodes at >= 0.95 x the stock throughput.

Example::

    BEIR_PEFT_DATA=../shared/datasets python benchmarks/encode_throughput.py
    python benchmarks/encode_throughput.py --num-docs 64 --repeats 1 --output /tmp/enc.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    cuda_peak_mb,
    interleaved_order,
    machine_info,
    median,
    peak_rss_mb,
    pick_device,
    print_table,
    set_threads,
    timed,
)

from beir_peft import PT2DPR  # noqa: E402
from beir_peft.data import load_dataset, passage_text  # noqa: E402
from beir_peft.encoders.backbone import DEFAULT_BACKBONE, load_backbone  # noqa: E402
from beir_peft.io import write_json_atomic  # noqa: E402

TARGET_RATIO = 0.95
STOCK = "stock"
PT2 = "pt2-dpr"
PT2_JOINT = "pt2-dpr-joint"
#: the TunedConfig fields recorded per PT2 variant (the ones that shape its cost or output)
PROMPT_FIELDS = (
    "method",
    "backbone",
    "pooling",
    "max_seq_length",
    "prefix_length",
    "gate",
    "init",
    "projection",
    "share_prompts",
    "shift_positions",
    "backbone_fingerprint",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "encode_throughput.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Corpus-encoding throughput: PT2DPR.encode_corpus vs stock SentenceTransformer.encode.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset", default="scifact", help="BEIR dataset name (looked up in $BEIR_PEFT_DATA) or folder"
    )
    parser.add_argument("--split", default="test", help="split to load (only its corpus is used)")
    parser.add_argument("--num-docs", type=int, default=2000, help="passages to encode per timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per variant (interleaved)")
    parser.add_argument("--warmup-docs", type=int, default=128, help="size of the untimed warm-up slice")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the passage sample")
    parser.add_argument("--skip-joint", action="store_true", help="leave out the gate=False variant")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    for name in ("num_docs", "batch_size", "repeats", "warmup_docs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def sample_docs(corpus: dict[str, dict[str, str]], count: int, seed: int) -> tuple[list[str], list[dict]]:
    """``count`` passages drawn without replacement (seeded) from the corpus, in a fixed order."""
    ids = sorted(corpus)
    if count > len(ids):
        raise SystemExit(f"--num-docs {count}: the corpus has only {len(ids)} passages")
    chosen = random.Random(seed).sample(ids, count)
    return chosen, [corpus[doc_id] for doc_id in chosen]


def token_stats(model, texts: list[str]) -> dict[str, float]:
    """Token counts of ``texts`` as the pipeline sees them (truncated at its ``max_seq_length``)."""
    tokenizer = model.tokenizer
    limit = int(model.max_seq_length)
    lengths = [
        len(ids)
        for ids in tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    ]
    kept = [min(n, limit) for n in lengths]
    return {
        "max_seq_length": limit,
        "mean_tokens": round(statistics.fmean(kept), 1),
        "median_tokens": float(statistics.median(kept)),
        "fraction_truncated": round(sum(n > limit for n in lengths) / len(lengths), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)

    dataset = load_dataset(args.dataset, split=args.split)
    doc_ids, docs = sample_docs(dataset.corpus, args.num_docs, args.seed)
    texts = [passage_text(doc) for doc in docs]
    warm_docs = docs[: min(args.warmup_docs, len(docs))]
    warm_texts = texts[: len(warm_docs)]

    print(f"loading {args.backbone} (stock) and building PT2-DPR retrievers on {device} ...", flush=True)
    stock = load_backbone(args.backbone, device=str(device))
    retrievers = {PT2: PT2DPR(args.backbone)}
    if not args.skip_joint:
        retrievers[PT2_JOINT] = PT2DPR(args.backbone, gate=False)
    for retriever in retrievers.values():
        # retriever.module holds the backbone *and* the prompts; moving it moves both.
        retriever.module.to(device)
        retriever.module.eval()
    stock.eval()

    batch = args.batch_size
    runs = {STOCK: lambda items: stock.encode(items[1], batch_size=batch, show_progress_bar=False)}
    for name, retriever in retrievers.items():
        runs[name] = lambda items, r=retriever: r.encode_corpus(items[0], batch_size=batch)
    names = list(runs)

    # --- warm-up (untimed for the result; its outputs double as a sanity check)
    warm_out, warm_seconds = {}, {}
    for name in names:
        with torch.inference_mode():
            warm_out[name], warm_seconds[name] = timed(
                lambda n=name: runs[n]((warm_docs, warm_texts)), device
            )
    reference = np.asarray(warm_out[STOCK], dtype=np.float32)
    sanity = {}
    for name in names[1:]:
        out = np.asarray(warm_out[name], dtype=np.float32)
        cos = (out * reference).sum(1) / (
            np.linalg.norm(out, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12
        )
        sanity[name] = {
            "shape_matches_stock": list(out.shape) == list(reference.shape),
            "max_abs_diff_vs_stock": float(np.abs(out - reference).max()),
            "mean_cosine_vs_stock": round(float(cos.mean()), 6),
        }

    # --- timed rounds, interleaved
    seconds: dict[str, list[float]] = {name: [] for name in names}
    orders = []
    progress = tqdm(total=args.repeats * len(names), desc="encode", unit="run")
    for round_index in range(args.repeats):
        order = interleaved_order(names, round_index)
        orders.append(order)
        for name in order:
            progress.set_postfix(variant=name)
            with torch.inference_mode():
                out, elapsed = timed(lambda n=name: runs[n]((docs, texts)), device)
            if len(out) != len(docs):
                raise RuntimeError(f"{name}: {len(out)} embeddings for {len(docs)} passages")
            seconds[name].append(elapsed)
            progress.update(1)
    progress.close()

    # --- summary
    n = len(docs)
    stock_rates = [n / s for s in seconds[STOCK]]
    stock_median = median(stock_rates)
    configs = {STOCK: {"library": "sentence-transformers", "call": "SentenceTransformer.encode"}}
    for name, retriever in retrievers.items():
        configs[name] = {
            "call": "PT2DPR.encode_corpus",
            "trainable_parameters": retriever.trainable_parameter_count(),
            **{k: v for k, v in retriever.config.to_dict().items() if k in PROMPT_FIELDS},
        }
    rows = []
    for name in names:
        rates = [n / s for s in seconds[name]]
        rate = median(rates)
        row = {
            "variant": name,
            "config": configs[name],
            "docs_per_second_median": round(rate, 2),
            "seconds_median": round(median(seconds[name]), 4),
            "seconds_per_repeat": [round(s, 4) for s in seconds[name]],
            "docs_per_second_per_repeat": [round(r, 2) for r in rates],
            "warmup_seconds": round(warm_seconds[name], 4),
        }
        if name != STOCK:
            ratio = rate / stock_median
            row["ratio_to_stock"] = round(ratio, 4)
            row["ratio_to_stock_per_repeat"] = [
                round(r / s, 4) for r, s in zip(rates, stock_rates, strict=True)
            ]
            row["target_ratio"] = TARGET_RATIO
            row["target_met"] = bool(ratio >= TARGET_RATIO)
        rows.append(row)

    machine = machine_info(device)
    machine["load_average_at_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    machine["peak_rss_mb"] = peak_rss_mb()
    machine["cuda_peak_allocated_mb"] = cuda_peak_mb(device)
    result = {
        "benchmark": "encode_throughput",
        "measures": "corpus-encoding docs/second: PT2DPR.encode_corpus vs SentenceTransformer.encode, same backbone and batch",
        "target": f"{PT2} docs/second >= {TARGET_RATIO} x {STOCK}",
        "target_met": next(row["target_met"] for row in rows if row["variant"] == PT2),
        "parameters": {
            "dataset": dataset.name,
            "dataset_path": str(dataset.path),
            "split": args.split,
            "num_docs": n,
            "batch_size": batch,
            "repeats": args.repeats,
            "warmup_docs": len(warm_docs),
            "seed": args.seed,
            "backbone": args.backbone,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "inference_mode": True,
            "doc_ids_sha256": hashlib.sha256("\n".join(doc_ids).encode()).hexdigest()[:16],
        },
        "data": {
            "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
            **token_stats(stock, texts),
        },
        "machine": machine,
        "round_orders": orders,
        "rows": rows,
        "warmup_sanity_check": sanity,
    }
    write_json_atomic(args.output, result)

    print()
    print_table(
        ["variant", "docs/s (median)", "s/run (median)", "ratio to stock", f"target >= {TARGET_RATIO}"],
        [
            [
                row["variant"],
                f"{row['docs_per_second_median']:.1f}",
                f"{row['seconds_median']:.3f}",
                f"{row['ratio_to_stock']:.3f}" if "ratio_to_stock" in row else "1.000",
                ("met" if row["target_met"] else "NOT met") if "target_met" in row else "-",
            ]
            for row in rows
        ],
    )
    print(
        f"\n{n} docs, batch {batch}, {args.repeats} repeat(s), device {device}, "
        f"{torch.get_num_threads()} torch thread(s); wrote {args.output}"
    )
    return result


if __name__ == "__main__":
    main()
