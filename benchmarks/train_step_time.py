"""Training step time and memory of PT2-DPR against full fine-tuning on the same backbone and batch.

What is measured: wall-clock seconds and peak memory of one optimizer step, per method, on one
fixed batch of ``--batch-size`` (query, relevant passage) pairs from a BEIR training split
(default: SciFact train). One step is the work ``beir_peft.methods.supervised.train`` does per batch:

1. tokenise the batch's columns (``tokenize_column``: queries, passages);
2. the method's training loss (``pair_loss``: ``DualEncoderMNRLoss`` with in-batch negatives, scale
   20, for dual encoders; ColBERT's pairwise MaxSim loss for ``pt2-colbert`` / ``colbert-ft``,
   whose third column, the hard negative, is the next pair's passage: a passage of the same length
   distribution as a mined one, so the step costs what a mined negative costs);
3. ``loss.backward()``; gradient clipping at ``--max-grad-norm`` (the loop's default 2.0; 0: off);
4. ``AdamW(retriever.trainable_parameters(), lr).step()``; ``zero_grad(set_to_none=True)``.

``METHOD:VARIANT[+VARIANT]`` in ``--methods`` trains with ``backbone-dropout`` or
``no-backbone-dropout`` (the frozen backbone in train or eval mode, ``--[no-]backbone-dropout``;
neither: the method's default), ``gradient-checkpointing``
(``--gradient-checkpointing``), as ``beir-peft train`` applies them (``set_backbone_training_modes``),
and/or ``bf16`` (the loss forward under bfloat16 autocast, as ``--mixed-precision bf16``; weights
and optimizer state stay float32).

Peak training memory, per method: on the CPU, in a fresh process per method (the allocator keeps
freed memory resident, so methods sharing a process would hide in each other's memory), the peak
resident memory during ``--probe-steps`` steps (Linux ``VmHWM``, reset after the model is built)
minus the resident memory before them: what activations, gradients, the optimizer's state and
temporaries add to the loaded model. On a GPU: ``torch.cuda.max_memory_allocated`` during one step
minus what was allocated before it, in the timing process.

(The loop's learning-rate scheduler and ``accelerate`` wrapping are left out: on one device they
cost nothing measurable.) Every retriever is built first (each ``build_retriever`` loads its own
backbone copy), in train mode; then each round runs one step of every method in interleaved order
(ABC, CBA, ...), so slow drift hits all methods alike. ``--warmup-steps`` rounds are untimed.
Reported per method: median seconds per step, its ratio to ``ft``, trainable parameter counts;
for the process: peak resident memory (and peak CUDA memory on a GPU).

Target: a PT2-DPR step takes <= 0.8 x the time of a full fine-tuning step.

Example::

    BEIR_PEFT_DATA=../shared/datasets python benchmarks/train_step_time.py
    python benchmarks/train_step_time.py --steps 2 --warmup-steps 1 --batch-size 4 --output /tmp/train.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    cuda_peak_mb,
    current_rss_mb,
    interleaved_order,
    machine_info,
    median,
    peak_rss_mb,
    peak_rss_since_reset_mb,
    pick_device,
    print_table,
    reset_peak_rss,
    set_threads,
    timed,
)

from beir_peft.data import load_dataset, passage_text  # noqa: E402
from beir_peft.encoders.backbone import DEFAULT_BACKBONE  # noqa: E402
from beir_peft.io import write_json_atomic  # noqa: E402
from beir_peft.models.loading import new_retriever  # noqa: E402
from beir_peft.registry import LATE_INTERACTION, method_spec, methods  # noqa: E402
from beir_peft.training.config import DEFAULT_LEARNING_RATES, TrainingConfig  # noqa: E402
from beir_peft.training.pairs import pair_loss, set_backbone_training_modes, tokenize_column  # noqa: E402

METHODS = methods(trainable=True)
VARIANTS = ("backbone-dropout", "no-backbone-dropout", "gradient-checkpointing", "bf16")
DROPOUT_VARIANTS = {"backbone-dropout": True, "no-backbone-dropout": False}

TARGET_RATIO = 0.8
TARGET_METHOD = "pt2-dpr"
REFERENCE = "ft"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "train_step_time.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Seconds per training step: pt2-dpr vs full fine-tuning (and other methods) on one batch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset", default="scifact", help="BEIR dataset name (looked up in $BEIR_PEFT_DATA) or folder"
    )
    parser.add_argument(
        "--split", default="train", help="split whose (query, relevant passage) pairs form the batch"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="(query, passage) pairs per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps per method before timing")
    parser.add_argument(
        "--methods",
        default=f"{TARGET_METHOD},{REFERENCE}",
        help=f"comma-separated, from: {', '.join(METHODS)}; METHOD:VARIANT[+VARIANT] with variants "
        f"{', '.join(VARIANTS)} (as train's --no-backbone-dropout, --gradient-checkpointing)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate for every method (default: the package's per-method default)",
    )
    parser.add_argument(
        "--max-grad-norm", type=float, default=2.0, help="gradient clipping as in the training loop (0: off)"
    )
    parser.add_argument("--scale", type=float, default=20.0, help="loss scale (1 / temperature)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the batch choice and dropout")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--probe-steps", type=int, default=2, help="steps of each method's memory measurement"
    )
    parser.add_argument(
        "--memory-probe", default=None, help=argparse.SUPPRESS
    )  # one method, in a child process
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2 (in-batch negatives need a second pair)")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must be >= 0")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [
        m for m in methods if m.partition(":")[0] not in METHODS or not set(variants_of(m)) <= set(VARIANTS)
    ]
    if unknown or not methods or len(set(methods)) != len(methods):
        parser.error(f"--methods: give distinct names from {', '.join(METHODS)} (got {args.methods!r})")
    args.methods = methods
    return args


def variants_of(method: str) -> list[str]:
    """``"pt2-dpr:no-backbone-dropout+gradient-checkpointing"`` -> its variants."""
    variants = method.partition(":")[2]
    return variants.split("+") if variants else []


def fixed_batch(dataset, size: int, seed: int) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """``size`` (query, passage) pairs with no query or passage twice (as the no-duplicates sampler)."""
    pairs = dataset.train_pairs()
    random.Random(seed).shuffle(pairs)
    chosen, seen_q, seen_d = [], set(), set()
    for qid, doc_id in pairs:
        if qid in seen_q or doc_id in seen_d:
            continue
        chosen.append((qid, doc_id))
        seen_q.add(qid)
        seen_d.add(doc_id)
        if len(chosen) == size:
            break
    if len(chosen) < size:
        raise SystemExit(f"--batch-size {size}: only {len(chosen)} distinct (query, passage) pairs available")
    queries = [dataset.queries[qid] for qid, _ in chosen]
    passages = [passage_text(dataset.corpus[doc_id]) for _, doc_id in chosen]
    return queries, passages, chosen


class Stepper:
    """One method's retriever, loss and optimizer; :meth:`step` is one training step."""

    def __init__(self, method: str, args: argparse.Namespace, device: torch.device):
        self.method = method
        base = method.partition(":")[0]
        variants = variants_of(method)
        self.late_interaction = method_spec(base).kind == LATE_INTERACTION
        self.retriever = new_retriever(base, args.backbone)
        self.retriever.module.to(device)  # backbone and prompts/adapters together
        self.parameters = self.retriever.trainable_parameters()
        self.lr = args.lr if args.lr is not None else DEFAULT_LEARNING_RATES[base]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=self.lr)
        config = TrainingConfig(
            scale=args.scale,
            hard_negatives=int(self.late_interaction),  # ColBERT's default: pairwise, one negative
            # neither variant: the method's default, as `beir-peft train`
            backbone_dropout=next((DROPOUT_VARIANTS[v] for v in variants if v in DROPOUT_VARIANTS), None),
            gradient_checkpointing="gradient-checkpointing" in variants,
        )
        self.loss_fn = pair_loss(self.retriever, self.retriever.module, config)
        self.max_grad_norm = args.max_grad_norm
        self.device_type = device.type
        self.bf16 = "bf16" in variants
        self.retriever.module.train()
        set_backbone_training_modes(self.retriever, config)

    def columns(self, queries: list[str], passages: list[str]) -> list[list[str]]:
        """The batch's text columns: queries, passages (and ColBERT's hard negatives)."""
        if self.late_interaction:
            return [queries, passages, passages[1:] + passages[:1]]
        return [queries, passages]

    def step(self, queries: list[str], passages: list[str]) -> float:
        columns = self.columns(queries, passages)
        features = [tokenize_column(self.retriever, texts, index) for index, texts in enumerate(columns)]
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(features)
        loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def cuda_step_memory_mib(
    stepper: Stepper, queries: list[str], passages: list[str], device: torch.device
) -> float:
    """Peak CUDA memory (MiB) one step allocates above what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    stepper.step(queries, passages)
    torch.cuda.synchronize(device)
    return round((torch.cuda.max_memory_allocated(device) - before) / (1024 * 1024), 1)


def cpu_step_memory(method: str, argv: list[str]) -> dict:
    """Peak resident memory of ``--probe-steps`` steps of ``method`` in a fresh process given this
    run's own arguments (``argv``; the probe's ``--memory-probe`` comes last and wins).

    The allocator keeps freed memory resident, so after one method has stepped, another's peak in
    the same process would hide in memory already held: each method is measured in its own process.
    """
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--memory-probe", method]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_probe(args: argparse.Namespace, device: torch.device) -> None:
    """Print (JSON) what ``--probe-steps`` steps of ``args.memory_probe`` add to the process's memory."""
    torch.manual_seed(args.seed)
    dataset = load_dataset(args.dataset, split=args.split)
    queries, passages, _ = fixed_batch(dataset, args.batch_size, args.seed)
    stepper = Stepper(args.memory_probe, args, device)
    resting = current_rss_mb()
    reset_peak_rss()
    for _ in range(args.probe_steps):
        stepper.step(queries, passages)
    peak = peak_rss_since_reset_mb()
    print(
        json.dumps(
            {"resting_rss_mib": resting, "peak_rss_mib": peak, "training_peak_mib": round(peak - resting, 1)}
        )
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    if args.memory_probe:
        memory_probe(args, device)
        return {}
    torch.manual_seed(args.seed)

    dataset = load_dataset(args.dataset, split=args.split)
    queries, passages, chosen = fixed_batch(dataset, args.batch_size, args.seed)

    steppers = {}
    for method in tqdm(args.methods, desc="build", unit="method"):
        steppers[method] = Stepper(method, args, device)
    rss_after_build = peak_rss_mb()

    seconds: dict[str, list[float]] = {m: [] for m in args.methods}
    warmup: dict[str, list[float]] = {m: [] for m in args.methods}
    losses: dict[str, list[float]] = {m: [] for m in args.methods}
    orders = []
    rounds = args.warmup_steps + args.steps
    progress = tqdm(total=rounds * len(args.methods), desc="train steps", unit="step")
    for round_index in range(rounds):
        order = interleaved_order(args.methods, round_index)
        orders.append(order)
        for method in order:
            progress.set_postfix(
                method=method, phase="warmup" if round_index < args.warmup_steps else "timed"
            )
            loss, elapsed = timed(lambda m=method: steppers[m].step(queries, passages), device)
            (warmup if round_index < args.warmup_steps else seconds)[method].append(elapsed)
            losses[method].append(round(loss, 5))
            progress.update(1)
    progress.close()

    memory: dict[str, dict] = {}
    for method in tqdm(args.methods, desc="memory", unit="method"):
        if device.type == "cuda":
            memory[method] = {
                "training_peak_mib": cuda_step_memory_mib(steppers[method], queries, passages, device)
            }
        else:
            memory[method] = cpu_step_memory(method, sys.argv[1:] if argv is None else argv)

    tokenizer_of = steppers[args.methods[0]].retriever
    q_tokens = tokenize_column(tokenizer_of, queries, 0)["attention_mask"].sum(1).float()
    p_tokens = tokenize_column(tokenizer_of, passages, 1)["attention_mask"].sum(1).float()

    reference = median(seconds[REFERENCE]) if REFERENCE in seconds else None
    rows = []
    for method in args.methods:
        retriever = steppers[method].retriever
        per_step = median(seconds[method])
        row = {
            "method": method,
            "seconds_per_step_median": round(per_step, 4),
            "seconds_per_step_mean": round(statistics.fmean(seconds[method]), 4),
            "seconds_per_step": [round(s, 4) for s in seconds[method]],
            "warmup_seconds": [round(s, 4) for s in warmup[method]],
            "training_peak_memory_mib": memory[method]["training_peak_mib"],
            "memory": memory[method],
            "learning_rate": steppers[method].lr,
            "trainable_parameters": retriever.trainable_parameter_count(),
            "total_parameters": retriever.total_parameter_count(),
            "trainable_fraction": round(
                retriever.trainable_parameter_count() / retriever.total_parameter_count(), 6
            ),
            "losses": losses[method],
        }
        if reference is not None:
            ratio = per_step / reference
            row["ratio_to_ft"] = round(ratio, 4)
            row["ratio_to_ft_per_step"] = [
                round(s / r, 4) for s, r in zip(seconds[method], seconds[REFERENCE], strict=True)
            ]
            if method == TARGET_METHOD:
                row["target_ratio"] = TARGET_RATIO
                row["target_met"] = bool(ratio <= TARGET_RATIO)
        rows.append(row)

    machine = machine_info(device)
    machine["load_average_at_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    machine["peak_rss_mb_after_build"] = rss_after_build
    machine["peak_rss_mb"] = peak_rss_mb()
    machine["cuda_peak_allocated_mb"] = cuda_peak_mb(device)
    target_row = next((row for row in rows if row["method"] == TARGET_METHOD and "target_met" in row), None)
    result = {
        "benchmark": "train_step_time",
        "measures": "seconds and peak memory above the resting process per training step (tokenise, loss forward, "
        "backward, clip, AdamW step) per method",
        "memory_measure": "cuda max_memory_allocated during a step - allocated before"
        if device.type == "cuda"
        else f"VmHWM during {args.probe_steps} steps - VmRSS before, one fresh process per method",
        "target": f"{TARGET_METHOD} seconds/step <= {TARGET_RATIO} x {REFERENCE}",
        "target_met": target_row["target_met"] if target_row else None,
        "parameters": {
            "dataset": dataset.name,
            "dataset_path": str(dataset.path),
            "split": args.split,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "methods": args.methods,
            "learning_rate": args.lr if args.lr is not None else "per-method default",
            "max_grad_norm": args.max_grad_norm,
            "scale": args.scale,
            "backbone": args.backbone,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "batch_pairs": [list(pair) for pair in chosen],
        },
        "data": {
            "mean_query_tokens": round(float(q_tokens.mean()), 1),
            "mean_passage_tokens": round(float(p_tokens.mean()), 1),
            "max_passage_tokens": int(p_tokens.max()),
        },
        "machine": machine,
        "round_orders": orders,
        "rows": rows,
    }
    write_json_atomic(args.output, result)

    print()
    print_table(
        ["method", "s/step (median)", "ratio to ft", "training peak MiB", "trainable params", "target"],
        [
            [
                row["method"],
                f"{row['seconds_per_step_median']:.3f}",
                f"{row['ratio_to_ft']:.3f}" if "ratio_to_ft" in row else "-",
                f"{row['training_peak_memory_mib']:,.0f}",
                f"{row['trainable_parameters']:,}",
                (f"<= {TARGET_RATIO}: " + ("met" if row["target_met"] else "NOT met"))
                if "target_met" in row
                else "-",
            ]
            for row in rows
        ],
    )
    print(
        f"\nbatch {args.batch_size}, {args.steps} timed step(s) after {args.warmup_steps} warm-up, device {device}, "
        f"{torch.get_num_threads()} torch thread(s), peak RSS {machine['peak_rss_mb']:.0f} MiB; wrote {args.output}"
    )
    return result


if __name__ == "__main__":
    main()
