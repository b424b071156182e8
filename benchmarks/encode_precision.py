"""Reduced-precision encoding against the stock float32 path, and encoding as a share of matmul peak.

What is measured, in one process on one device, for ``--num-docs`` passages of a BEIR corpus
(default SciFact, ``title + " " + text``) at batch ``--batch-size``:

* throughput (documents per second, median over interleaved rounds ABC.., ..CBA) of
  ``stock-fp32``: ``SentenceTransformer.encode`` (the stock path), ``stock-bf16``: the same model
  cast to bfloat16 (``SentenceTransformer(name, model_kwargs={"dtype": torch.bfloat16})``'s
  weights), ``plain-bf16``: the package's ``load_model(dtype="bfloat16")`` (float32 weights kept,
  bfloat16 copies swapped in for the forward), and ``pt2-dpr-fp32`` / ``pt2-dpr-bf16``:
  ``PT2DPR().encode_corpus`` (untrained, gated: the default recipe) in each dtype;
* the ratios the targets name: ``plain-bf16 / stock-fp32`` (>= 1.8) and ``pt2-dpr-bf16 /
  stock-bf16`` (>= 0.95);
* on a GPU also ``stock-fp16`` and ``plain-fp16`` (float16, the GPU's half precision);
* quality: nDCG@10 on the whole split (every query, the whole corpus, exact search) of the plain
  model in float32 and in bfloat16 (``--skip-quality`` leaves it out), target: within 0.002;
* efficiency: the encoder's forward FLOPs (per token and layer: ``2 * (4 h^2 + 2 h i)`` for the
  projections and ``4 * s * h`` for attention over the ``s`` tokens of its batch) over the time,
  against a timed matmul of the feed-forward's shape (``(B*s, h) x (h, i)``, best of several) in
  the same dtype: the share of the machine's measured matmul peak each variant reaches, counting
  real tokens and also the padded ones (the gap is what padding wastes).

Example::

    BEIR_PEFT_DATA=../shared/datasets OMP_NUM_THREADS=2 python benchmarks/encode_precision.py
    python benchmarks/encode_precision.py --dataset demo --num-docs 32 --repeats 1 --skip-quality \\
        --output /tmp/precision.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved_order, machine_info, median, pick_device, print_table, set_threads, timed  # noqa: E402

from beir_peft import PT2DPR  # noqa: E402
from beir_peft.data import load_dataset, passage_text  # noqa: E402
from beir_peft.encoders.backbone import DEFAULT_BACKBONE, hf_model, load_backbone  # noqa: E402
from beir_peft.evaluation import evaluate_retriever  # noqa: E402
from beir_peft.io import write_json_atomic  # noqa: E402
from beir_peft.models.loading import load_model  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "encode_precision.json"
TARGETS = {
    "plain-bf16 / stock-fp32": 1.8,
    "pt2-dpr-bf16 / stock-bf16": 0.95,
}
TARGET_NDCG_GAP = 0.002


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quality", action="store_true", help="no nDCG@10 runs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def padded_token_counts(
    tokenizer, texts: list[str], limit: int, batch_size: int
) -> tuple[int, int, list[tuple[int, int]]]:
    """(real tokens, padded tokens, [(rows, padded length)] per batch) as sentence-transformers
    batches: sorted by character length, longest first, each batch padded to its longest row."""
    lengths = [min(len(ids), limit) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [lengths[i] for i in order[start : start + batch_size]]
        batches.append((len(rows), max(rows)))
    return sum(lengths), sum(n * s for n, s in batches), batches


def forward_flops(config, batches: list[tuple[int, int]], real_tokens: int) -> dict[str, float]:
    """Forward FLOPs of the encoder over ``batches``: the projections per real and per padded token,
    attention per padded token (each attends over its batch's padded length)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * (4 * h * h + 2 * h * i)
    padded = sum(n * s * (dense + 4 * s * h) for n, s in batches) * layers
    # the useful work: the same formula over real tokens, attention over the real length of the batch
    useful = real_tokens * dense * layers + sum(n * s * 4 * s * h for n, s in batches) * layers * (
        real_tokens / max(1, sum(n * s for n, s in batches))
    )
    return {"flops_padded": float(padded), "flops_real": float(useful)}


def matmul_peak(config, dtype: torch.dtype, device, rows: int = 4096, repeats: int = 20) -> float:
    """FLOP/s of the best of ``repeats`` timed ``(rows, h) x (h, i)`` matmuls in ``dtype``."""
    h, i = config.hidden_size, config.intermediate_size
    a = torch.randn(rows, h, device=device, dtype=dtype)
    b = torch.randn(h, i, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2.0 * rows * h * i / best


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    data = load_dataset(args.dataset, split=args.split)
    ids = sorted(data.corpus)
    chosen = random.Random(args.seed).sample(ids, min(args.num_docs, len(ids)))
    docs = [data.corpus[d] for d in chosen]
    texts = [passage_text(doc) for doc in docs]

    stock = load_backbone(args.backbone, device=str(device))
    stock_bf16 = copy.deepcopy(stock).to(torch.bfloat16)  # what model_kwargs={"dtype": bf16} loads
    plain_bf16 = load_model(args.backbone, device=str(device), dtype="bfloat16")
    pt2 = PT2DPR(args.backbone)
    pt2.to(device)
    pt2_bf16 = PT2DPR(args.backbone)  # its own copy: switching one retriever's dtype drops its cast weights
    pt2_bf16.to(device)
    pt2_bf16.encoding_dtype = "bfloat16"
    batch = args.batch_size
    runs = {
        "stock-fp32": lambda: stock.encode(texts, batch_size=batch, show_progress_bar=False),
        "stock-bf16": lambda: stock_bf16.encode(texts, batch_size=batch, show_progress_bar=False),
        "plain-bf16": lambda: plain_bf16.encode_corpus(docs, batch_size=batch),
        "pt2-dpr-fp32": lambda: pt2.encode_corpus(docs, batch_size=batch),
        "pt2-dpr-bf16": lambda: pt2_bf16.encode_corpus(docs, batch_size=batch),
    }
    dtypes = {"stock-fp32": torch.float32, "stock-bf16": torch.bfloat16, "plain-bf16": torch.bfloat16,
              "pt2-dpr-fp32": torch.float32, "pt2-dpr-bf16": torch.bfloat16}  # fmt: skip
    if device.type == "cuda":  # float16 is a GPU's half precision (a CPU runs it slowly)
        stock_fp16 = copy.deepcopy(stock).to(torch.float16)
        plain_fp16 = load_model(args.backbone, device=str(device), dtype="float16")
        runs["stock-fp16"] = lambda: stock_fp16.encode(texts, batch_size=batch, show_progress_bar=False)
        runs["plain-fp16"] = lambda: plain_fp16.encode_corpus(docs, batch_size=batch)
        dtypes.update({"stock-fp16": torch.float16, "plain-fp16": torch.float16})
    names = list(runs)

    outputs = {}
    for name in names:  # warm-up, and the vectors for the agreement check
        with torch.inference_mode():
            outputs[name] = np.asarray(runs[name](), dtype=np.float32)
    reference = outputs["stock-fp32"]

    def cosine(a, b):
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    agreement = {
        name: {"min_cosine_vs_stock_fp32": round(float(cosine(outputs[name], reference).min()), 6),
               "mean_cosine_vs_stock_fp32": round(float(cosine(outputs[name], reference).mean()), 6)}
        for name in names[1:]
    }  # fmt: skip

    seconds = {name: [] for name in names}
    progress = tqdm(total=args.repeats * len(names), desc="encode", unit="run")
    for round_index in range(args.repeats):
        for name in interleaved_order(names, round_index):
            with torch.inference_mode():
                _, elapsed = timed(runs[name], device)
            seconds[name].append(elapsed)
            progress.update(1)
    progress.close()

    config = hf_model(stock).config
    real, padded, batches = padded_token_counts(stock.tokenizer, texts, int(stock.max_seq_length), batch)
    flops = forward_flops(config, batches, real)
    peaks = {dtype: matmul_peak(config, dtype, device) for dtype in set(dtypes.values())}
    rows = {}
    for name in names:
        s = median(seconds[name])
        peak = peaks[dtypes[name]]
        rows[name] = {
            "docs_per_second": round(len(docs) / s, 2),
            "seconds_median": round(s, 4),
            "seconds_per_round": [round(x, 4) for x in seconds[name]],
            "dtype": str(dtypes[name]).removeprefix("torch."),
            "share_of_matmul_peak_real_tokens": round(flops["flops_real"] / s / peak, 4),
            "share_of_matmul_peak_padded_tokens": round(flops["flops_padded"] / s / peak, 4),
        }
    rate = {name: rows[name]["docs_per_second"] for name in names}
    ratios = {
        "plain-bf16 / stock-fp32": rate["plain-bf16"] / rate["stock-fp32"],
        "stock-bf16 / stock-fp32": rate["stock-bf16"] / rate["stock-fp32"],
        "pt2-dpr-bf16 / stock-bf16": rate["pt2-dpr-bf16"] / rate["stock-bf16"],
        "pt2-dpr-fp32 / stock-fp32": rate["pt2-dpr-fp32"] / rate["stock-fp32"],
        "plain-bf16 / stock-bf16": rate["plain-bf16"] / rate["stock-bf16"],
    }
    if "plain-fp16" in rate:
        ratios["plain-fp16 / stock-fp32"] = rate["plain-fp16"] / rate["stock-fp32"]
        ratios["plain-fp16 / stock-fp16"] = rate["plain-fp16"] / rate["stock-fp16"]

    quality = None
    if not args.skip_quality:
        quality = {}
        for dtype in ("float32", "bfloat16", *(("float16",) if device.type == "cuda" else ())):
            model = load_model(args.backbone, device=str(device), dtype=dtype)
            result = evaluate_retriever(model, data.corpus, data.queries, data.qrels, k_values=[10, 100],
                                        batch_size=batch, show_progress_bar=False)  # fmt: skip
            quality[dtype] = {"NDCG@10": result.metrics["NDCG@10"], "Recall@100": result.metrics["Recall@100"],
                              "seconds": round(result.timings["total"], 1)}  # fmt: skip
        quality["ndcg10_gap"] = round(quality["float32"]["NDCG@10"] - quality["bfloat16"]["NDCG@10"], 5)

    result = {
        "benchmark": "encode_precision",
        "parameters": {"dataset": data.name, "split": args.split, "num_docs": len(docs), "batch_size": batch,
                       "repeats": args.repeats, "backbone": args.backbone, "device": str(device),
                       "threads": torch.get_num_threads(), "seed": args.seed},  # fmt: skip
        "tokens": {"real": real, "padded": padded, "padding_share": round(1 - real / padded, 4),
                   "max_seq_length": int(stock.max_seq_length)},  # fmt: skip
        "forward_flops": flops,
        "matmul_peak_gflops": {str(k).removeprefix("torch."): round(v / 1e9, 2) for k, v in peaks.items()},
        "variants": rows,
        "ratios": {k: round(v, 4) for k, v in ratios.items()},
        "targets": {k: {"at_least": t, "met": bool(ratios[k] >= t)} for k, t in TARGETS.items()},
        "agreement": agreement,
        "quality": quality,
        "quality_target": {"ndcg10_gap_at_most": TARGET_NDCG_GAP,
                           "met": None if quality is None else bool(abs(quality["ndcg10_gap"]) <= TARGET_NDCG_GAP)},
        "machine": {**machine_info(device), "load_average_at_end": list(os.getloadavg())},
    }  # fmt: skip
    write_json_atomic(args.output, result)
    print_table(
        ["variant", "docs/s", "vs stock-fp32", "share of matmul peak (real / padded tokens)"],
        [[n, f"{rows[n]['docs_per_second']:.1f}", f"{rate[n] / rate['stock-fp32']:.2f}x",
          f"{rows[n]['share_of_matmul_peak_real_tokens']:.3f} / {rows[n]['share_of_matmul_peak_padded_tokens']:.3f}"]
         for n in names],
    )  # fmt: skip
    print({k: round(v, 3) for k, v in ratios.items()}, quality, f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
