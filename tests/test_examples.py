"""The scripts in examples/ run as users run them (on the bundled demo data)."""

from __future__ import annotations

import sys

from conftest import REPO_ROOT


def run_example(name, argv):
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    try:
        module = __import__(name)
        return module.main(argv)
    finally:
        sys.path.pop(0)


def test_stock_beir_example_runs():
    metrics = run_example("beir_stock_evaluation", ["--batch-size", "16"])
    assert 0.5 < metrics["NDCG@10"] <= 1.0


def test_train_then_evaluate_example_runs(tmp_path):
    metrics = run_example(
        "train_then_evaluate", ["--output", str(tmp_path / "ex"), "--batch-size", "4", "--max-steps", "2"]
    )
    assert 0.5 < metrics["NDCG@10"] <= 1.0
