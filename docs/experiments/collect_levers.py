"""Print the DPTDR-levers table of docs/results.md from pt2_dpr_levers.sh and pt2_dpr_unified.sh runs.

    python docs/experiments/collect_levers.py LEVER_RUNS SEED_RUNS SEED42_DIR [--json OUT]

Every ``<name>-s<seed>.<dataset>.json`` in ``LEVER_RUNS`` is a row: nDCG@10 on SciFact test and the
MS MARCO slice, its difference to the zero-shot backbone (``SEED42_DIR/zero-shot``) and to the
levers-off run of the same seed and setting (``pt2-nodrop``: seed 42 in ``SEED42_DIR``, the others
in ``SEED_RUNS``), each with a two-tailed paired t-test over queries, and the seconds spent training.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from collect_seeds import DATASETS, paired, per_query  # the same folder: run as a script

REFERENCE = "pt2-nodrop"
ORDER = ("ict-pre", "ict", "title-pre", "title", "unified")


def reference_of(seed: int, seed_runs: Path, seed42: Path) -> Path:
    return seed42 / REFERENCE if seed == 42 else seed_runs / f"{REFERENCE}-s{seed}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lever_runs", type=Path)
    parser.add_argument("seed_runs", type=Path)
    parser.add_argument("seed42", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    for path in args.lever_runs.glob("*-s*.scifact.json"):
        match = re.fullmatch(r"(.+)-s(\d+)\.scifact\.json", path.name)
        prefix = args.lever_runs / path.name[: -len(".scifact.json")]
        if match and Path(f"{prefix}.{DATASETS[1]}.json").is_file():
            runs.append((match.group(1), int(match.group(2)), prefix))
    runs.sort(key=lambda run: (run[1], ORDER.index(run[0]) if run[0] in ORDER else len(ORDER), run[0]))
    print("| run | seed | SciFact nDCG@10 | vs zero-shot | vs levers off | MS MARCO slice nDCG@10 | vs zero-shot "
          "| vs levers off | training s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    result = []
    for name, seed, prefix in runs:
        reference = reference_of(seed, args.seed_runs, args.seed42)
        cells, entry = [f"`{name}`", str(seed)], {"run": name, "seed": seed}
        for dataset in DATASETS:
            score = json.loads(Path(f"{prefix}.{dataset}.json").read_text())["metrics"]["NDCG@10"]
            zero = paired(per_query(args.seed42 / "zero-shot", dataset), per_query(prefix, dataset))
            off = (
                paired(per_query(reference, dataset), per_query(prefix, dataset))
                if Path(f"{reference}.{dataset}.json").is_file()
                else None
            )
            cells += [f"{score:.4f}", f"{zero[0]:+.4f} (p={zero[1]:.3f})",
                      f"{off[0]:+.4f} (p={off[1]:.3f})" if off else "-"]  # fmt: skip
            entry[dataset] = {"ndcg@10": score, "vs_zero_shot": zero, "vs_levers_off": off}
        # the run folder's record, or its copy beside the evaluation files (docs/results/)
        config = next(
            (c for c in (prefix / "config.json", Path(f"{prefix}.config.json")) if c.is_file()), None
        )
        seconds = sum(json.loads(config.read_text())["training"]["epoch_seconds"]) if config else None
        cells.append(f"{seconds:.0f}" if seconds is not None else "-")
        entry["training_seconds"] = seconds
        result.append(entry)
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
