"""The runs behind docs/results.md, "ART with oracle teachers": does ART's training signal reach the student?

Usage: BEIR_PEFT_DATA=/path/to/beir/datasets python docs/experiments/art_oracle.py RUN_DIR [options]

No T0 teacher can be had here, so ART's teacher is an oracle built from SciFact **train** qrels
(:class:`beir_peft.methods.art.QrelsOracleTeacher`: 0 for a judged-relevant passage, -10 otherwise)
or its inversion (the anti-oracle). Everything else is ART as users run it (``train_art``): the
SciFact train questions (no passages given), the full SciFact corpus as the retrieval index, the
real all-MiniLM-L6-v2 as student. Each model and the zero-shot backbone (at the same
``max_seq_length``) are evaluated with the package's evaluation on SciFact **test** and on the MS
MARCO slice (msmarco-dl19-5k, test), with a paired t-test against zero-shot per dataset.

Parallel runs: one ``--students "" --no-summary`` (zero-shot), one ``--teachers oracle --no-summary``
and one ``--teachers anti --no-summary``; then the plain command collects them (nothing is redone).

Writes to ``--out`` (default docs/results/art_oracle/): ``NAME.DATASET.json`` (metrics, config,
versions, timings, per-query nDCG@10; as ``beir-peft evaluate -o`` writes them), ``NAME.config.json``
(the trained folder's config with its training record) and ``summary.json``; prints the Markdown
table. Finished trainings and evaluations are skipped, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import load_dataset
from beir_peft.evaluation import evaluate_retriever, write_result_json
from beir_peft.io import write_json_atomic
from beir_peft.methods.art import ARTConfig, QrelsOracleTeacher, train_art
from beir_peft.models.tuned import build_retriever

DATASETS = ("scifact", "msmarco-dl19-5k")
TEACHERS = {"oracle": False, "anti": True}  # name -> inverted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="folder for the trained retrievers")
    parser.add_argument("--out", type=Path, default=Path("docs/results/art_oracle"))
    parser.add_argument("--students", default="ft", help="comma-separated ART students (ft, pt2-dpr, lora)")
    parser.add_argument("--teachers", default="oracle,anti", help="comma-separated: oracle, anti")
    parser.add_argument("--no-summary", action="store_true", help="train and evaluate only (parallel runs)")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--student-temperature", type=float, default=None, help="[default: ARTConfig's]")
    parser.add_argument("--lr", type=float, default=1e-4, help="[ART's for ft: 2e-5]")
    parser.add_argument("--held-out-questions", type=int, default=0,
                        help="kept out of training for the adaptation check [ARTConfig's: 200; the published "
                             "oracle runs, from before the check: 0]")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    train = load_dataset("scifact", split="train")
    tests = {name: load_dataset(name, split="test") for name in DATASETS}

    def evaluate(model, name: str) -> dict[str, dict]:
        results = {}
        for dataset, data in tests.items():
            path = args.out / f"{name}.{dataset}.json"
            if not path.exists():
                result = evaluate_retriever(model, data.corpus, data.queries, data.qrels, show_progress_bar=False,
                                            config={"dataset": dataset, "split": "test", "model": name})  # fmt: skip
                write_result_json(result, path)
            results[dataset] = json.loads(path.read_text())
        return results

    rows = {}
    if not (args.no_summary and args.students):  # a parallel training run leaves zero-shot to another
        rows["zero-shot"] = evaluate(build_retriever("ft", max_seq_length=args.max_seq_length), "zero-shot")
    summary: dict[str, dict] = {"zero-shot": {"trainable_parameters": 0, "weights_bytes": 0}}
    for student in filter(None, args.students.split(",")):
        for kind in filter(None, args.teachers.split(",")):
            inverted = TEACHERS[kind]
            name = f"art-{student}-{kind}"
            config = ARTConfig(
                student=student, max_seq_length=args.max_seq_length, top_k=args.top_k, batch_size=args.batch_size,
                max_steps=args.max_steps, refresh_every=10**6, learning_rate=args.lr, checkpoint_every=0,
                warmup_ratio=0.1, held_out_questions=args.held_out_questions,
                **({"student_temperature": args.student_temperature}
                   if args.student_temperature is not None else {}),
            )  # fmt: skip
            teacher = QrelsOracleTeacher.from_dataset(train, inverted=inverted)
            folder = train_art(train.queries, train.corpus, args.runs / name, config, teacher=teacher,
                               dataset_name="scifact", show_progress_bar=False)  # fmt: skip
            saved = json.loads((folder / "config.json").read_text())
            write_json_atomic(args.out / f"{name}.config.json", saved)
            rows[name] = evaluate(beir_peft.load(folder), name)
            summary[name] = {
                "trainable_parameters": saved["trainable_parameters"],
                "weights_bytes": (folder / "weights.safetensors").stat().st_size,
                "train_seconds": sum(saved["training"]["epoch_seconds"]) or None,
                "initial_logit_spread": saved["training"]["initial_logit_spread"],
                "student_temperature": saved["training"]["student_temperature"],
                "adaptation_check": saved["training"].get("adaptation_check"),
            }

    if args.no_summary:
        return
    base = rows["zero-shot"]
    for name, results in rows.items():
        for dataset, result in results.items():
            entry = summary[name].setdefault(dataset, {})
            entry["NDCG@10"] = result["metrics"]["NDCG@10"]
            entry["Recall@100"] = result["metrics"]["Recall@100"]
            if name != "zero-shot":
                test = paired_t_test(base[dataset]["per_query"]["NDCG@10"], result["per_query"]["NDCG@10"],
                                     tests[dataset].qrels)  # fmt: skip
                entry["vs_zero_shot"] = test.to_dict()
    write_json_atomic(args.out / "summary.json", {"settings": vars(args) | {"runs": str(args.runs),
                                                                           "out": str(args.out)}, "models": summary})  # fmt: skip
    print(table(summary))


def table(summary: dict[str, dict]) -> str:
    head = ("| model | SciFact test nDCG@10 / R@100; vs zero-shot (paired t-test) | MS MARCO slice nDCG@10 / R@100; "
            "vs zero-shot | trainable params | weights bytes |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    lines = [head]
    for name, entry in summary.items():
        cells = []
        for dataset in DATASETS:
            d = entry[dataset]
            cell = f"{d['NDCG@10']:.4f} / {d['Recall@100']:.4f}"
            if "vs_zero_shot" in d:
                cell += f"; {d['vs_zero_shot']['delta']:+.4f} (p={d['vs_zero_shot']['p_value']:.3g})"
            cells.append(cell)
        lines.append(f"| `{name}` | {cells[0]} | {cells[1]} | {entry['trainable_parameters']:,} | "
                     f"{entry['weights_bytes']:,} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
