"""Print the Markdown results table of docs/results.md from a run folder of docs/experiments/pt2_dpr_scifact.sh.

    python docs/experiments/collect_results.py RUN_DIR

For each model: nDCG@10 / Recall@100 on SciFact test and on the MS MARCO slice (from the
``<name>.<dataset>.json`` files written by ``beir-peft evaluate``), the nDCG@10 difference to the
zero-shot backbone with a two-tailed paired t-test over queries, trainable parameters, bytes of
the saved weights, and the mean training time per epoch (from the saved folder's config.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATASETS = ("scifact", "msmarco-dl19-5k")
ORDER = (
    "zero-shot",
    "ft",
    "pt2",
    "pt2-paper",
    "pt2-lr1e-3",
    "pt2-nodrop",
    "prompt",
    "bitfit",
    "lora",
    "adapter",
    "adapter-lr1e-3",
)


def paired_test(runs: Path, name: str, dataset: str) -> str:
    """nDCG@10 difference to the zero-shot backbone and its two-tailed paired t-test p-value."""
    from scipy.stats import ttest_rel

    base = json.loads((runs / f"zero-shot.{dataset}.json").read_text())["per_query"]["NDCG@10"]
    this = json.loads((runs / f"{name}.{dataset}.json").read_text())["per_query"]["NDCG@10"]
    queries = sorted(base)
    a, b = [base[q] for q in queries], [this.get(q, 0.0) for q in queries]
    delta = (sum(b) - sum(a)) / len(a)
    return f"{delta:+.4f} (p={ttest_rel(b, a).pvalue:.3f})"


def row(runs: Path, name: str) -> str | None:
    cells = [f"`{name}`"]
    found = False
    for dataset in DATASETS:
        path = runs / f"{name}.{dataset}.json"
        if path.is_file():
            metrics = json.loads(path.read_text())["metrics"]
            delta = "" if name == "zero-shot" else f"; {paired_test(runs, name, dataset)}"
            cells.append(f"{metrics['NDCG@10']:.4f} / {metrics['Recall@100']:.4f}{delta}")
            found = True
        else:
            cells.append("not run")
    if not found:
        return None
    config_path = runs / name / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        training = config.get("training", {})
        seconds = training.get("epoch_seconds") or []
        weights = (runs / name / "weights.safetensors").stat().st_size
        cells += [
            f"{config['trainable_parameters']:,}",
            f"{weights:,}",
            f"{sum(seconds) / len(seconds):.0f}" if seconds else "-",
            f"{training.get('learning_rate')}",
        ]
    else:
        cells += ["0", "0", "-", "-"]
    return "| " + " | ".join(cells) + " |"


def main(runs: Path) -> None:
    print(
        "| model | SciFact test nDCG@10 / R@100; vs zero-shot (paired t-test) | MS MARCO slice nDCG@10 / R@100; vs zero-shot | trainable params | weights bytes | s / epoch | lr |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    names = list(ORDER) + sorted({p.name.split(".")[0] for p in runs.glob("*.json")} - set(ORDER))
    for name in names:
        line = row(runs, name)
        if line:
            print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
