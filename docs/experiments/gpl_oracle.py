"""GPL with oracle teachers on SciFact: does the training signal reach the student, in the right direction?

The runs behind docs/results.md, section "GPL with oracle teachers". No T5 or cross-encoder weights
exist offline, so the pipeline's two teachers are replaced: the generated queries by the SciFact
**train** questions, each with its relevant passage as the source passage (``oracle_queries``), and
the cross-encoder by :class:`OracleLabeler` built from the SciFact train qrels (+5 for a judged
passage, -5 otherwise; ``inverted`` swaps them). Everything else is ``run_gpl`` as users run it
(BM25 hard negatives, one negative per example, MarginMSE on the dot product, the real
all-MiniLM-L6-v2 as the student). Each trained folder and the zero-shot backbone (at the same
max_seq_length, with its own cosine) are evaluated on SciFact test and on the MS MARCO slice;
per-query nDCG@10 is tested against zero-shot (two-tailed paired t-test).

Usage (finished runs and evaluations are skipped)::

    BEIR_PEFT_DATA=../shared/datasets python docs/experiments/gpl_oracle.py runs/gpl_oracle \\
        --out docs/results/gpl_oracle
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import load_dataset, resolve_dataset
from beir_peft.encoders.backbone import DEFAULT_BACKBONE
from beir_peft.evaluation import evaluate_retriever, write_result_json
from beir_peft.io import write_json_atomic
from beir_peft.methods.gpl import GPLConfig, OracleLabeler, oracle_queries, run_gpl
from beir_peft.models.loading import load_model

DATASETS = ("scifact", "msmarco-dl19-5k")
STUDENTS = ("ft", "pt2-dpr")
TEACHERS = {"oracle": False, "anti": True}  # name -> inverted


def write_queries(path: Path, train) -> int:
    rows = oracle_queries(train.qrels, train.queries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def train_one(runs: Path, student: str, teacher: str, train, queries_file: Path, args) -> Path:
    config = GPLConfig(
        preset="tiny",
        student=student,
        miners=["bm25"],
        negatives_per_miner=args.negatives,
        steps=args.steps,
        warmup_steps=max(1, args.steps // 10),
        batch_size=args.batch_size,
        learning_rate=args.lr.get(student),
        max_seq_length=args.max_seq_length,
        seed=args.seed,
    )
    labeler = OracleLabeler(train.qrels, train.queries, inverted=TEACHERS[teacher], source="scifact train")
    started = time.perf_counter()
    folder = run_gpl(
        train.corpus, runs / f"{student}-{teacher}", config, queries_file=queries_file, dataset_name="scifact",
        labeler=labeler, show_progress_bar=not args.quiet, echo=print,
    )  # fmt: skip
    print(f"{student}-{teacher}: {time.perf_counter() - started:.0f} s")
    return folder


def evaluate(model, name: str, out: Path, args) -> dict[str, dict]:
    found = {}
    for dataset in DATASETS:
        path = out / f"{name}.{dataset}.json"
        if not path.is_file():
            data = load_dataset(resolve_dataset(dataset), split="test")
            result = evaluate_retriever(
                model, data.corpus, data.queries, data.qrels, config={"dataset": dataset, "split": "test",
                "model": name}, show_progress_bar=not args.quiet,
            )  # fmt: skip
            write_result_json(result, path)
        found[dataset] = json.loads(path.read_text(encoding="utf-8"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/results/gpl_oracle"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--negatives", type=int, default=30)
    parser.add_argument("--lr-ft", type=float, default=2e-5)
    parser.add_argument("--lr-pt2", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.lr = {"ft": args.lr_ft, "pt2-dpr": args.lr_pt2}
    args.out.mkdir(parents=True, exist_ok=True)

    train = load_dataset(resolve_dataset("scifact"), split="train")
    queries_file = args.runs / "oracle_queries.jsonl"
    print(f"{write_queries(queries_file, train)} (question, relevant passage) rows from SciFact train")

    zero_shot = load_model(DEFAULT_BACKBONE)
    zero_shot.model.max_seq_length = args.max_seq_length  # the students' length: a like-for-like reference
    results = {"zero-shot": evaluate(zero_shot, "zero-shot", args.out, args)}
    sizes = {"zero-shot": (0, 0)}
    for student in STUDENTS:
        for teacher in TEACHERS:
            name = f"{student}-{teacher}"
            folder = train_one(args.runs, student, teacher, train, queries_file, args)
            results[name] = evaluate(beir_peft.load(folder), name, args.out, args)
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            sizes[name] = (config["trainable_parameters"], (folder / "weights.safetensors").stat().st_size)
            write_json_atomic(args.out / f"{name}.config.json", config)

    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("runs", "out")}, "models": {}}
    rows = []
    for name, by_dataset in results.items():
        entry = {"trainable_parameters": sizes[name][0], "weights_bytes": sizes[name][1]}
        cells = []
        for dataset in DATASETS:
            result, reference = by_dataset[dataset], results["zero-shot"][dataset]
            scores, ref = result["per_query"]["NDCG@10"], reference["per_query"]["NDCG@10"]
            test = paired_t_test(ref, scores, ref)
            entry[dataset] = {
                "NDCG@10": result["metrics"]["NDCG@10"],
                "Recall@100": result["metrics"]["Recall@100"],
                "vs_zero_shot": test.to_dict(),
            }
            cell = f"{result['metrics']['NDCG@10']:.4f} / {result['metrics']['Recall@100']:.4f}"
            if name != "zero-shot":
                cell += f"; {test.delta:+.4f} (p={test.p_value:.3g})"
            cells.append(cell)
        summary["models"][name] = entry
        rows.append(f"| `{name}` | {' | '.join(cells)} | {sizes[name][0]:,} | {sizes[name][1]:,} |")
    write_json_atomic(args.out / "summary.json", summary)
    print("| model | SciFact test nDCG@10 / R@100; vs zero-shot | MS MARCO slice nDCG@10 / R@100; vs zero-shot "
          "| trainable params | weights bytes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
