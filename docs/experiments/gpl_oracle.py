"""GPL with oracle teachers on SciFact: does the training signal reach the student, in the right direction?

The runs behind docs/results.md, section "GPL with oracle teachers". No T5 or cross-encoder weights
exist offline, so the pipeline's two teachers are replaced: the generated queries by the SciFact
**train** questions, each with its relevant passage as the source passage (``oracle_queries``), and
the cross-encoder by :class:`OracleLabeler` built from the SciFact train qrels (+5 for a judged
passage, -5 otherwise; ``inverted`` swaps them). Everything else is ``run_gpl`` as users run it
(BM25 hard negatives, one negative per example, MarginMSE on the dot product, the real
all-MiniLM-L6-v2 as the student). Each trained folder and the zero-shot backbone (at the same
max_seq_length, with its own cosine) are evaluated on SciFact test and on the MS MARCO slice;
per-query nDCG@10 is tested against zero-shot (two-tailed paired t-test). ``zero-shot-dot`` is the
backbone without its final Normalize, scored by dot product: where a GPL ``dot`` student starts.

``--scifact-docs N`` evaluates every SciFact test query over a seeded slice of the corpus (the
judged passages plus random others up to N, as tests/conftest.py's ``scifact_zero_shot_slice``);
0 (the default) is the whole corpus.

Usage (finished runs and evaluations are skipped)::

    BEIR_PEFT_DATA=../shared/datasets python docs/experiments/gpl_oracle.py runs/gpl_oracle \\
        --out docs/results/gpl_oracle
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import BeirDataset, load_dataset, resolve_dataset
from beir_peft.encoders.backbone import DEFAULT_BACKBONE
from beir_peft.evaluation import evaluate_retriever, write_result_json
from beir_peft.io import write_json_atomic
from beir_peft.methods.gpl import DenseMarginLabeler, GPLConfig, OracleLabeler, oracle_queries, run_gpl
from beir_peft.methods.gpl.pipeline import NEGATIVES_FILE, QUERIES_FILE, SAMPLE_FILE
from beir_peft.models.loading import load_model
from beir_peft.models.tuned import build_retriever

DATASETS = ("scifact", "msmarco-dl19-5k")
STUDENTS = ("ft", "pt2-dpr")
TEACHERS = {"oracle": False, "anti": True}  # name -> inverted


def write_queries(path: Path, train) -> int:
    rows = oracle_queries(train.qrels, train.queries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def share_stages(first: Path, folder: Path) -> None:
    """Stages 0-2 (sample, queries, hard negatives) do not depend on the student or the teacher: a
    later run starts from the first run's files, which the pipeline then reuses as its own."""
    for name in (SAMPLE_FILE, QUERIES_FILE, NEGATIVES_FILE):
        if (first / name).is_file() and not (folder / name).exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first / name, folder / name)


def train_one(runs: Path, student: str, teacher: str, train, queries_file: Path, args) -> Path:
    share_stages(runs / f"{STUDENTS[0]}-oracle", runs / f"{student}-{teacher}")
    config = GPLConfig(
        preset="tiny",
        student=student,
        miners=args.miners,
        mining_max_seq_length=args.max_seq_length,
        negatives_per_miner=args.negatives,
        steps=args.steps,
        warmup_steps=max(1, args.steps // 10),
        batch_size=args.batch_size,
        learning_rate=args.lr.get(student),
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        held_out_queries=0,  # the published numbers: every query trained on (before the adaptation check)
    )
    base = (
        DenseMarginLabeler.of_dot_student_start(max_seq_length=args.max_seq_length) if args.anchor else None
    )
    labeler = OracleLabeler(
        train.qrels, train.queries, high=args.oracle_scale, low=-args.oracle_scale, inverted=TEACHERS[teacher],
        source="scifact train", base=base,
    )  # fmt: skip
    started = time.perf_counter()
    folder = run_gpl(
        train.corpus, runs / f"{student}-{teacher}", config, queries_file=queries_file, dataset_name="scifact",
        labeler=labeler, show_progress_bar=not args.quiet, echo=print,
    )  # fmt: skip
    print(f"{student}-{teacher}: {time.perf_counter() - started:.0f} s")
    return folder


def test_data(dataset: str, slice_docs: int) -> BeirDataset:
    """The test split; with ``slice_docs``, every query over the judged passages plus seeded others."""
    data = load_dataset(resolve_dataset(dataset), split="test")
    if not slice_docs:
        return data
    judged = sorted({doc for docs in data.qrels.values() for doc in docs})
    others = sorted(set(data.corpus) - set(judged))
    kept = judged + random.Random(0).sample(others, max(0, slice_docs - len(judged)))
    corpus = {doc: data.corpus[doc] for doc in kept}
    return BeirDataset(data.name, data.path, "test", corpus, data.queries, data.qrels)


def evaluate(model, name: str, out: Path, args, datasets=DATASETS) -> dict[str, dict]:
    found = {}
    for dataset in datasets:
        path = out / f"{name}.{dataset}.json"
        if not path.is_file():
            data = test_data(dataset, args.scifact_docs if dataset == "scifact" else 0)
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
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=32, help="training, mining and evaluation")
    parser.add_argument("--miner", dest="miners", action="append", help="default: all-MiniLM-L6-v2")
    parser.add_argument("--negatives", type=int, default=30)
    parser.add_argument("--lr-ft", type=float, default=2e-5)
    parser.add_argument("--lr-pt2", type=float, default=3e-3)
    parser.add_argument(
        "--oracle-scale", type=float, default=5.0, help="the oracle's logit: +S relevant, -S not"
    )
    parser.add_argument(
        "--anchor",
        action="store_true",
        help="add the oracle's margins to those of the student's start (DenseMarginLabeler as base)",
    )
    parser.add_argument("--scifact-docs", type=int, default=1000, help="evaluate on a corpus slice (0: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--students",
        nargs="+",
        default=list(STUDENTS),
        choices=STUDENTS,
        help="train these only (e.g. one process per student; a last run collects all)",
    )
    parser.add_argument(
        "--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS, help="train with these only"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.miners = args.miners or [DEFAULT_BACKBONE]
    args.lr = {"ft": args.lr_ft, "pt2-dpr": args.lr_pt2}
    args.out.mkdir(parents=True, exist_ok=True)

    train = load_dataset(resolve_dataset("scifact"), split="train")
    queries_file = args.runs / "oracle_queries.jsonl"
    print(f"{write_queries(queries_file, train)} (question, relevant passage) rows from SciFact train")

    zero_shot = load_model(DEFAULT_BACKBONE)
    zero_shot.model.max_seq_length = args.max_seq_length  # the students' length: a like-for-like reference
    models = {"zero-shot": zero_shot}
    results = {"zero-shot": evaluate(zero_shot, "zero-shot", args.out, args, datasets=("scifact",))}
    raw = build_retriever("ft", normalize=False, max_seq_length=args.max_seq_length)
    results["zero-shot-dot"] = evaluate(raw, "zero-shot-dot", args.out, args, datasets=("scifact",))
    sizes = {"zero-shot": (0, 0), "zero-shot-dot": (0, 0)}
    seconds: dict[str, float] = {}
    for student in args.students:
        for teacher in args.teachers:
            name = f"{student}-{teacher}"
            folder = train_one(args.runs, student, teacher, train, queries_file, args)
            models[name] = beir_peft.load(folder)
            results[name] = evaluate(models[name], name, args.out, args, datasets=("scifact",))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            sizes[name] = (config["trainable_parameters"], (folder / "weights.safetensors").stat().st_size)
            seconds[name] = sum(config["training"]["epoch_seconds"])  # the training loop, as recorded
            write_json_atomic(args.out / f"{name}.config.json", config)
    if STUDENTS[0] not in args.students:  # zero-shot's is the first student's process to evaluate
        del models["zero-shot"]
    for name, model in models.items():  # the other domain last: SciFact's answer comes first
        results[name].update(evaluate(model, name, args.out, args, datasets=DATASETS[1:]))

    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "out")}
    summary = {"settings": settings, "train_seconds": seconds, "models": {}}
    rows = []
    if set(args.students) != set(STUDENTS) or set(args.teachers) != set(TEACHERS):
        return  # a partial run: the table needs every student and teacher
    for name, by_dataset in results.items():
        entry = {"trainable_parameters": sizes[name][0], "weights_bytes": sizes[name][1]}
        cells = []
        for dataset in DATASETS:
            if dataset not in by_dataset:
                cells.append("-")
                continue
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
