"""Print the DDR tables of docs/results.md from the run folder of docs/experiments/ddr_cross_domain.sh.

    python docs/experiments/collect_ddr.py RUN_DIR/ddr

For each direction: nDCG@10 / Recall@100 on the target's test split (from the ``<name>.<target>.json``
files of ``beir-peft evaluate``), the nDCG@10 difference to the zero-shot backbone and to DR with a
two-tailed paired t-test over queries (beir_peft.analysis.significance), and what each model stores
per target domain.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from beir_peft.analysis.significance import paired_t_test

DIRECTIONS = {
    "scifact -> msmarco-dl19-5k": ("msmarco-dl19-5k", [
        ("zero-shot", "zero-shot backbone", None),
        ("dr-scifact", "DR: full fine-tuning on SciFact", "ft"),
        ("rem-scifact", "REM on the source DAM (no target DAM)", "rem-scifact"),
        ("ddr-scifact-to-msmarco", "DDR: target DAM (from the source DAM) + REM", "ddr-scifact-to-msmarco"),
        ("ddr-noseq-scifact-to-msmarco", "DDR without sequential initialisation", "ddr-noseq-scifact-to-msmarco"),
    ]),
    "msmarco-dl19-5k -> scifact": ("scifact", [
        ("zero-shot", "zero-shot backbone", None),
        ("dr-msmarco", "DR: full fine-tuning on the MS MARCO slice", "dr-msmarco"),
        ("rem-msmarco", "REM on the source DAM (no target DAM)", "rem-msmarco"),
        ("ddr-msmarco-to-scifact", "DDR: target DAM (from the source DAM) + REM", "ddr-msmarco-to-scifact"),
        ("ddr-noseq-msmarco-to-scifact", "DDR without sequential initialisation", "ddr-noseq-msmarco-to-scifact"),
    ]),
}  # fmt: skip


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0


def storage(runs: Path, folder: str | None) -> str:
    """Bytes a model adds for one target domain: a DR model or DAM is a whole backbone; a REM is shared."""
    if folder is None:
        return "0 (shared backbone)"
    config = json.loads((runs / folder / "config.json").read_text())
    weights = (runs / folder / "weights.safetensors").stat().st_size
    if config.get("method") != "ddr":
        return f"{weights:,} (whole model)"
    backbone = Path(config["backbone"])
    dam = folder_bytes(backbone) if backbone.is_dir() and backbone.parent == runs else 0
    return f"{dam:,} (DAM) + {weights:,} (REM, shared)" if dam else f"{weights:,} (REM)"


def main(runs: Path) -> None:
    for direction, (target, models) in DIRECTIONS.items():
        results = {}
        for name, _, _ in models:
            path = runs / f"{name}.{target}.json"
            if path.is_file():
                results[name] = json.loads(path.read_text())
        if "zero-shot" not in results:
            continue
        print(f"\n### {direction} (target: {target} test)\n")
        print("| model | nDCG@10 / R@100 | vs zero-shot | vs DR | stored for the target domain (bytes) |")
        print("| --- | --- | --- | --- | --- |")
        base = results["zero-shot"]["per_query"]["NDCG@10"]
        dr_name = models[1][0]
        dr = results.get(dr_name, {}).get("per_query", {}).get("NDCG@10")
        for name, label, folder in models:
            if name not in results:
                print(f"| {label} | not run | | | |")
                continue
            metrics, per_query = results[name]["metrics"], results[name]["per_query"]["NDCG@10"]
            cells = [label, f"{metrics['NDCG@10']:.4f} / {metrics['Recall@100']:.4f}"]
            for reference, skip in (
                (base, name == "zero-shot"),
                (dr, name in ("zero-shot", dr_name) or dr is None),
            ):
                if skip:
                    cells.append("")
                else:
                    test = paired_t_test(reference, per_query, sorted(base))
                    cells.append(f"{test.delta:+.4f} (p={test.p_value:.3f})")
            cells.append(storage(runs, folder))
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ddr"))
