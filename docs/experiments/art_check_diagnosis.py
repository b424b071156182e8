"""Why ART's adaptation check passed a run that lost on SciFact test (docs/results.md, "The adaptation
check on real data"): the same held-out questions judged by their real SciFact train qrels.

Usage: BEIR_PEFT_DATA=/path/to/beir/datasets python docs/experiments/art_check_diagnosis.py \
    RUN_DIR/art-ft-oracle [...] --out FILE.json

For each trained folder of ``art_oracle.py`` (default seed, ``--held-out-questions 200``), the start
model (all-MiniLM-L6-v2 at the student's 64 tokens) and the trained student retrieve from the whole
SciFact corpus for the questions the run held out, and BEIR's evaluator scores them against the
questions' real relevance judgements: nDCG@10 and R@100, with a paired t-test. If the real
judgements show no loss either, the check's miss is the sample's, not the signal's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import beir_peft
from beir_peft.analysis.significance import paired_t_test
from beir_peft.data import load_dataset
from beir_peft.evaluation import evaluate_retriever
from beir_peft.io import write_json_atomic
from beir_peft.models.tuned import build_retriever
from beir_peft.training.adaptation_check import held_out_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    train = load_dataset("scifact", split="train")
    report = {}
    for folder in args.folders:
        training = json.loads((folder / "config.json").read_text())["training"]
        held = held_out_sample(list(train.queries), training["held_out_questions"], training["seed"])
        queries = {q: train.queries[q] for q in held}
        qrels = {q: train.qrels[q] for q in held if q in train.qrels}
        results = {}
        for name, model in (
            ("start", build_retriever("ft", max_seq_length=64)),
            ("adapted", beir_peft.load(folder)),
        ):
            results[name] = evaluate_retriever(model, train.corpus, queries, qrels, k_values=[10, 100],
                                               show_progress_bar=False)  # fmt: skip
        test = paired_t_test(results["start"].per_query_ndcg10, results["adapted"].per_query_ndcg10, qrels)
        report[str(folder)] = {
            "held_out_questions": len(qrels),
            "check": training.get("adaptation_check"),
            **{
                name: {k: round(result.metrics[k], 5) for k in ("NDCG@10", "Recall@100")}
                for name, result in results.items()
            },
            "p_value": float(f"{test.p_value:.3g}"),
        }
    write_json_atomic(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
