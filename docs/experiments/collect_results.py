"""Print the Markdown results table of docs/results.md from a run folder of docs/experiments/pt2_dpr_scifact.sh.

    python docs/experiments/collect_results.py RUN_DIR

For each model: nDCG@10 / Recall@100 on SciFact test and on the MS MARCO slice (from the
``<name>.<dataset>.json`` files written by ``beir-peft evaluate``), trainable parameters, bytes of
the saved weights, and the mean training time per epoch (from the saved folder's config.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATASETS = ("scifact", "msmarco-dl19-5k")
ORDER = ("zero-shot", "ft", "pt2", "pt2-paper", "prompt", "bitfit", "lora")


def row(runs: Path, name: str) -> str | None:
    cells = [f"`{name}`"]
    found = False
    for dataset in DATASETS:
        path = runs / f"{name}.{dataset}.json"
        if path.is_file():
            metrics = json.loads(path.read_text())["metrics"]
            cells.append(f"{metrics['NDCG@10']:.4f} / {metrics['Recall@100']:.4f}")
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
        "| model | SciFact test nDCG@10 / R@100 | MS MARCO slice nDCG@10 / R@100 | trainable params | weights bytes | s / epoch | lr |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    names = [n for n in ORDER] + sorted({p.name.split(".")[0] for p in runs.glob("*.json")} - set(ORDER))
    for name in names:
        line = row(runs, name)
        if line:
            print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
