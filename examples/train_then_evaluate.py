"""Train PT2-DPR on a BEIR train split, save it, reload it, and evaluate it with BEIR's evaluator.

    python examples/train_then_evaluate.py                              # the demo data, seconds
    BEIR_PEFT_DATA=/path/to/datasets python examples/train_then_evaluate.py --dataset scifact --epochs 3

The same run from the command line is ``beir-peft train pt2-dpr --dataset scifact --output DIR``
followed by ``beir-peft evaluate --model DIR --dataset scifact``.
"""

from __future__ import annotations

import argparse

from beir.retrieval.evaluation import EvaluateRetrieval

import beir_peft
from beir_peft import PT2DPR
from beir_peft.data import load_dataset
from beir_peft.methods.supervised import TrainingConfig, train
from beir_peft.search import ExactSearch


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="demo", help="a BEIR dataset name or folder")
    parser.add_argument("--output", default="runs/pt2-dpr-example")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--prefix-length", type=int, default=32)
    args = parser.parse_args(argv)

    train_split = load_dataset(args.dataset, split="train")
    model = PT2DPR(prefix_length=args.prefix_length)
    print(f"{model.describe()}; training on {train_split.describe()}")
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps)
    folder = train(model, train_split, args.output, config, overwrite=True)

    trained = beir_peft.load(folder)  # what a user ships: config + prefix weights only
    test = load_dataset(args.dataset, split="test")
    retriever = EvaluateRetrieval(ExactSearch(trained, batch_size=64), score_function="dot")
    results = retriever.retrieve(test.corpus, test.queries)
    ndcg, _map, recall, precision = retriever.evaluate(test.qrels, results, retriever.k_values)
    print(f"{test.describe()}: NDCG@10 {ndcg['NDCG@10']:.4f}, Recall@100 {recall['Recall@100']:.4f}")
    return {**ndcg, **recall}


if __name__ == "__main__":
    main()
