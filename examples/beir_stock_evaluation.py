"""PT2-DPR inside a stock BEIR script: BEIR's loader, BEIR's exact search, BEIR's evaluator.

    python examples/beir_stock_evaluation.py                      # untrained PT2DPR on the demo data
    python examples/beir_stock_evaluation.py --data /path/to/scifact --model runs/pt2

Only the model line is beir_peft's; everything else is the script BEIR's README shows. (BEIR 2.2's
``DenseRetrievalExactSearch`` crashes on ``None`` titles and on a single query;
``beir_peft.search.ExactSearch`` is the drop-in that fixes both.)
"""

from __future__ import annotations

import argparse

from beir.datasets.data_loader import GenericDataLoader
from beir.retrieval.evaluation import EvaluateRetrieval
from beir.retrieval.search.dense import DenseRetrievalExactSearch as DRES

import beir_peft
from beir_peft import PT2DPR
from beir_peft.data import demo_dataset_path


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(demo_dataset_path()), help="a BEIR dataset folder")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--model", default=None, help="a saved beir_peft folder (default: an untrained PT2DPR)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    corpus, queries, qrels = GenericDataLoader(data_folder=args.data).load(split=args.split)
    # BEIR's exact search concatenates titles: give it strings, as its loader promises.
    corpus = {
        doc_id: {"title": doc.get("title") or "", "text": doc.get("text") or ""}
        for doc_id, doc in corpus.items()
    }

    model = beir_peft.load(args.model) if args.model else PT2DPR()
    retriever = EvaluateRetrieval(DRES(model, batch_size=args.batch_size), score_function="dot")
    results = retriever.retrieve(corpus, queries)
    ndcg, _map, recall, precision = retriever.evaluate(qrels, results, retriever.k_values)
    for name, value in {**ndcg, **recall}.items():
        if name.endswith(("@10", "@100")):
            print(f"{name:>12}: {value:.4f}")
    return {**ndcg, **_map, **recall, **precision}


if __name__ == "__main__":
    main()
