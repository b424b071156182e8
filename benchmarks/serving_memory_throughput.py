"""Multi-domain serving: memory and mixed-batch throughput of 10 domains on one backbone.

Ten domains on the real backbone (default all-MiniLM-L6-v2): PT2-DPR folders (gated deep prompts)
and LoRA folders, with seeded random non-zero trained tensors (a prompt's or an adapter's values
do not change its cost), saved to a temporary folder. Two measurements:

* **resident memory**, each setup in a fresh process (RSS after loading and encoding a probe batch
  in every domain, minus the RSS after the same imports; Linux ``/proc/self/smaps_rollup``, which
  also gives PSS and anonymous memory): ``backbone`` (the plain backbone alone),
  ``served`` (``beir_peft.load_domains`` of the 10 folders: one backbone) and ``separate``
  (``beir_peft.load`` of each folder: 10 backbones). Target: ``served`` <= (``backbone`` + the 10
  adapters' bytes) x 1.05, against about 10 x ``backbone`` for ``separate``.
* **throughput**, in this process, on the same batches of ``--num-docs`` corpus passages
  (longest first, ``--batch-size`` each, ``max_seq_length`` ``--max-seq-length``): ``mixed`` (every
  batch's rows drawn from all domains, seeded), ``single`` (every batch in one domain, domain
  ``j mod 10`` for batch ``j``), both through the server, ``stock``
  (``SentenceTransformer.encode`` of the plain backbone, for reference) and ``mixed-peft`` (the
  mixed batches with LoRA rows through peft's own ``adapter_names`` path instead of the gathered
  batched matmul). Variants run interleaved
  for ``--repeats`` rounds; medians. Target: ``mixed`` >= 0.9 x ``single`` docs/second.

Example::

    BEIR_PEFT_DATA=../shared/datasets python benchmarks/serving_memory_throughput.py
    python benchmarks/serving_memory_throughput.py --num-docs 64 --repeats 1 --output /tmp/serving.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    current_rss_mb,
    interleaved_order,
    machine_info,
    median,
    pick_device,
    print_table,
    set_threads,
    timed,
)

MEMORY_TARGET_OVERHEAD = 0.05
THROUGHPUT_TARGET = 0.9
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "serving.json"
DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
SETUPS = ("backbone", "served", "separate")
VARIANTS = ("mixed", "single", "stock", "mixed-peft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="10 domains served from one backbone vs 10 separately loaded retrievers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="scifact", help="BEIR dataset name or folder (its corpus)")
    parser.add_argument("--num-docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--domains", type=int, default=10, help="number of domains")
    parser.add_argument(
        "--lora-domains", type=int, default=3, help="how many of them are LoRA (rest PT2-DPR)"
    )
    parser.add_argument("--prefix-length", type=int, default=32)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 <= args.lora_domains <= args.domains:
        parser.error("--lora-domains must be between 0 and --domains")
    return args


# ----------------------------------------------------------------------------- domains
def make_domains(args, root: Path) -> dict[str, str]:
    """Save ``--domains`` folders with seeded random non-zero trained tensors; ``{name: folder}``."""
    from beir_peft import PT2DPR
    from beir_peft.encoders.backbone import load_backbone
    from beir_peft.models.tuned import TunedConfig, TunedRetriever

    backbone = load_backbone(args.backbone)
    folders = {}
    for index in range(args.domains):
        lora = index >= args.domains - args.lora_domains
        name = f"{'lora' if lora else 'pt2'}-{index}"
        if lora:
            config = TunedConfig(
                method="lora", backbone=args.backbone, lora_r=args.lora_r, max_seq_length=args.max_seq_length
            )
            # each on its own copy: a LoRA retriever may not share a backbone while training
            retriever = TunedRetriever(config, backbone_model=load_backbone(args.backbone))
        else:
            retriever = PT2DPR(
                args.backbone,
                backbone_model=backbone,
                init="random",
                prefix_length=args.prefix_length,
                max_seq_length=args.max_seq_length,
            )
        generator = torch.Generator().manual_seed(args.seed * 1000 + index)
        with torch.no_grad():
            for _, parameter in sorted(retriever.module.named_parameters()):
                if parameter.requires_grad:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
        retriever.save(root / name)
        folders[name] = str(root / name)
    return folders


def adapter_bytes(folders: dict[str, str]) -> int:
    from beir_peft.artifacts import read_weights

    return sum(t.numel() * t.element_size() for f in folders.values() for t in read_weights(f).values())


# ----------------------------------------------------------------------------- memory (child processes)
def _memory_mb() -> dict[str, float]:
    """RSS, PSS and anonymous memory of this process in MiB (``/proc/self/smaps_rollup``; RSS only
    from ``/proc/self/status`` where that file is missing)."""
    fields = {"Rss": "rss", "Pss": "pss", "Anonymous": "anonymous"}
    found: dict[str, float] = {}
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in fields:
                    found[fields[key]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        found["rss"] = current_rss_mb()
    return found


PROBE = ["a short probe passage about proteins", "another one, on the climate of coastal regions"]


def child(args) -> None:
    """Load one setup, encode a probe batch in every domain, read every weight (the backbone's
    weights are memory-mapped from its safetensors file and count in RSS once read), and print
    the memory figures as JSON. Run in a fresh process per setup."""
    import peft.tuners.lora  # noqa: F401  (imports counted in the baseline, not in the setup)
    import transformers.models.bert.modeling_bert  # noqa: F401

    import beir_peft
    from beir_peft.encoders.backbone import load_backbone

    folders = json.loads(args.folders)

    def touch(module) -> None:
        """Read every weight: memory-mapped weights count in RSS only once read, and a backbone
        that serves long enough reads its whole vocabulary."""
        with torch.no_grad():
            for tensor in module.parameters():
                tensor.sum()

    def build():
        if args.child == "backbone":
            kept = load_backbone(args.backbone)
            kept.encode(PROBE)
            touch(kept)
        elif args.child == "served":
            kept = beir_peft.load_domains(folders)
            kept.encode_corpus(PROBE * len(folders), domains=[name for name in folders for _ in PROBE])
            touch(kept.module)
        else:
            kept = [beir_peft.load(folder) for folder in folders.values()]
            for retriever in kept:
                retriever.encode_corpus(PROBE)
                touch(retriever.trainable_module())
        return kept

    # A first build, thrown away, loads the code each setup runs (library pages count in RSS too)
    # and lazy module state; large tensors are returned to the system when freed (the parent sets
    # a fixed malloc mmap threshold), so the second build's delta is the setup itself.
    build()
    gc.collect()
    before = _memory_mb()
    kept = build()
    gc.collect()
    after = _memory_mb()
    assert kept is not None
    print(json.dumps({"setup": args.child, "before_mb": before, "after_mb": after}))


def measure_memory(args, folders: dict[str, str]) -> dict:
    results = {}
    for setup in SETUPS:
        command = [sys.executable, __file__, "--child", setup, "--folders", json.dumps(folders)]
        command += ["--backbone", args.backbone]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        # a fixed threshold: large blocks are always mmapped, so freeing them returns them to the system
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"memory child {setup} failed: {done.stderr.strip().splitlines()[-1:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        for key in row["after_mb"]:
            row[f"{key}_delta_mb"] = round(row["after_mb"][key] - row["before_mb"][key], 1)
        results[setup] = row
    adapters_mb = adapter_bytes(folders) / (1024 * 1024)
    backbone = results["backbone"]["rss_delta_mb"]
    budget = (backbone + adapters_mb) * (1 + MEMORY_TARGET_OVERHEAD)
    served = results["served"]["rss_delta_mb"]
    return {
        "setups": results,
        "adapters_mb": round(adapters_mb, 2),
        "served_budget_mb": round(budget, 1),
        "served_overhead_vs_backbone_plus_adapters": round(served / (backbone + adapters_mb) - 1, 4),
        "separate_over_backbone": round(results["separate"]["rss_delta_mb"] / backbone, 2),
        "served_over_separate": round(served / results["separate"]["rss_delta_mb"], 4),
        "target": f"served <= (backbone + adapters) x {1 + MEMORY_TARGET_OVERHEAD}",
        "target_met": bool(served <= budget),
    }


# ----------------------------------------------------------------------------- throughput
def measure_throughput(args, folders: dict[str, str], device) -> dict:
    import beir_peft
    from beir_peft.data import load_dataset, passage_text

    dataset = load_dataset(args.dataset)
    ids = sorted(dataset.corpus)
    chosen = random.Random(args.seed).sample(ids, min(args.num_docs, len(ids)))
    texts = sorted((passage_text(dataset.corpus[i]) for i in chosen), key=len, reverse=True)
    served = beir_peft.load_domains(folders, device=str(device))
    names = list(folders)
    rng = random.Random(args.seed + 1)
    batches = [texts[s : s + args.batch_size] for s in range(0, len(texts), args.batch_size)]
    mixed_rows = [[rng.choice(names) for _ in batch] for batch in batches]
    single_rows = [[names[j % len(names)]] * len(batch) for j, batch in enumerate(batches)]
    stock = served.backbone
    length = args.max_seq_length

    def through_server(rows):
        def run():
            for batch, domains in zip(batches, rows, strict=True):
                served.encode_corpus(batch, batch_size=args.batch_size, domains=domains)

        return run

    def through_stock():
        previous, stock.max_seq_length = stock.max_seq_length, length
        try:
            for batch in batches:
                stock.encode(batch, batch_size=args.batch_size, show_progress_bar=False)
        finally:
            stock.max_seq_length = previous

    def with_peft_mixing(run):
        def wrapped():
            served.lora_mixing = "peft"
            try:
                run()
            finally:
                served.lora_mixing = "gathered"

        return wrapped

    runs = {
        "mixed": through_server(mixed_rows),
        "single": through_server(single_rows),
        "stock": through_stock,
        "mixed-peft": with_peft_mixing(through_server(mixed_rows)),
    }
    for run in runs.values():  # warm-up
        with torch.inference_mode():
            run()
    seconds = {name: [] for name in runs}
    orders = []
    for round_index in range(args.repeats):
        order = interleaved_order(list(runs), round_index)
        orders.append(order)
        for name in order:
            with torch.inference_mode():
                _, elapsed = timed(runs[name], device)
            seconds[name].append(elapsed)
    rows = {}
    for name in runs:
        rates = [len(texts) / s for s in seconds[name]]
        rows[name] = {
            "docs_per_second_median": round(median(rates), 2),
            "seconds_per_repeat": [round(s, 4) for s in seconds[name]],
        }
    ratio = rows["mixed"]["docs_per_second_median"] / rows["single"]["docs_per_second_median"]
    return {
        "num_docs": len(texts),
        "batch_size": args.batch_size,
        "max_seq_length": length,
        "batches": len(batches),
        "domains_per_mixed_batch_mean": round(sum(len(set(r)) for r in mixed_rows) / len(mixed_rows), 2),
        "round_orders": orders,
        "variants": rows,
        "mixed_over_single": round(ratio, 4),
        "mixed_peft_over_single": round(
            rows["mixed-peft"]["docs_per_second_median"] / rows["single"]["docs_per_second_median"], 4
        ),
        "mixed_over_stock": round(
            rows["mixed"]["docs_per_second_median"] / rows["stock"]["docs_per_second_median"], 4
        ),
        "target": f"mixed >= {THROUGHPUT_TARGET} x single",
        "target_met": bool(ratio >= THROUGHPUT_TARGET),
    }


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.child:
        child(args)
        return None
    from beir_peft.io import write_json_atomic

    device = pick_device(args.device)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as root:
        print(f"saving {args.domains} domains ({args.lora_domains} LoRA) ...", flush=True)
        folders = make_domains(args, Path(root))
        memory = None if args.skip_memory else measure_memory(args, folders)
        print("timing mixed vs single-domain batches ...", flush=True)
        throughput = measure_throughput(args, folders, device)
        adapters = adapter_bytes(folders)
    result = {
        "benchmark": "serving_memory_throughput",
        "measures": "10 domains on one backbone (load_domains) vs 10 separately loaded retrievers: RSS; "
        "mixed-domain vs single-domain batches: docs/second",
        "parameters": {
            "backbone": args.backbone,
            "domains": args.domains,
            "lora_domains": args.lora_domains,
            "prefix_length": args.prefix_length,
            "lora_r": args.lora_r,
            "dataset": args.dataset,
            "seed": args.seed,
            "repeats": args.repeats,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "adapter_bytes_total": adapters,
        },
        "memory": memory,
        "throughput": throughput,
        "machine": machine_info(device),
    }
    write_json_atomic(args.output, result)
    if memory is not None:
        setups = memory["setups"]
        print_table(
            ["setup", "RSS delta (MiB)"],
            [[name, f"{setups[name]['rss_delta_mb']:.1f}"] for name in SETUPS]
            + [
                ["10 adapters (bytes)", f"{memory['adapters_mb']:.1f}"],
                ["budget", memory["served_budget_mb"]],
            ],
        )
        print(f"memory target ({memory['target']}): {'met' if memory['target_met'] else 'NOT met'}\n")
    variants = throughput["variants"]
    print_table(
        ["variant", "docs/s (median)"],
        [[name, f"{variants[name]['docs_per_second_median']:.1f}"] for name in VARIANTS],
    )
    print(
        f"mixed / single = {throughput['mixed_over_single']:.3f} "
        f"(target >= {THROUGHPUT_TARGET}: {'met' if throughput['target_met'] else 'NOT met'}); wrote {args.output}"
    )
    return result


if __name__ == "__main__":
    main()
