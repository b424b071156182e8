"""Print the three-seed table of docs/results.md from the runs of pt2_dpr_seeds.sh.

    python docs/experiments/collect_seeds.py RUN_DIR SEED42_DIR [--json OUT]

``SEED42_DIR`` holds pt2_dpr_scifact.sh's seed-42 files (``docs/results/pt2_dpr``: ``pt2-lr1e-3``,
``pt2-nodrop``, ``ft`` and ``zero-shot``); ``RUN_DIR`` the other seeds' (``<name>-s<seed>``). For
each variant and test set: nDCG@10 per seed, their mean and sample standard deviation, the mean's
difference to the zero-shot backbone with a two-tailed paired t-test over queries of the
seed-averaged per-query nDCG@10, and the mean seconds per training epoch. A last block compares the
two dropout settings the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

DATASETS = ("scifact", "msmarco-dl19-5k")
VARIANTS = {"pt2-lr1e-3": "PT2-DPR, backbone dropout on", "pt2-nodrop": "PT2-DPR, backbone dropout off",
            "ft": "full fine-tuning"}  # fmt: skip


def runs_of(name: str, seed42: Path, runs: Path) -> dict[int, Path]:
    """``{seed: prefix of <name>.<dataset>.json}`` for every seed evaluated on both test sets."""
    found = {42: seed42 / name}
    for path in sorted(runs.glob(f"{name}-s*.scifact.json")):
        seed = int(path.name[len(name) + 2 :].split(".")[0])
        found[seed] = runs / f"{name}-s{seed}"
    return {s: p for s, p in found.items() if all(Path(f"{p}.{d}.json").is_file() for d in DATASETS)}


def per_query(prefix: Path, dataset: str) -> dict[str, float]:
    return json.loads(Path(f"{prefix}.{dataset}.json").read_text())["per_query"]["NDCG@10"]


def seed_mean(prefixes: list[Path], dataset: str) -> dict[str, float]:
    """Per-query nDCG@10 averaged over the seeds' runs."""
    tables = [per_query(prefix, dataset) for prefix in prefixes]
    return {q: statistics.fmean(t.get(q, 0.0) for t in tables) for q in tables[0]}


def paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean of ``b - a`` over ``a``'s queries and the two-tailed paired t-test p-value."""
    from scipy.stats import ttest_rel

    queries = sorted(a)
    x, y = [a[q] for q in queries], [b.get(q, 0.0) for q in queries]
    return statistics.fmean(y) - statistics.fmean(x), float(ttest_rel(y, x).pvalue)


def epoch_seconds(prefix: Path) -> float | None:
    """Mean seconds per epoch from the run folder's config.json (or the copy ``<prefix>.config.json``)."""
    config = next((c for c in (prefix / "config.json", Path(f"{prefix}.config.json")) if c.is_file()), None)
    if config is None:
        return None
    seconds = json.loads(config.read_text())["training"].get("epoch_seconds") or []
    return statistics.fmean(seconds) if seconds else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("seed42", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    zero = {d: per_query(args.seed42 / "zero-shot", d) for d in DATASETS}
    result, seeded = {}, {}
    print("| model | seeds | SciFact nDCG@10 per seed | mean (sd) | vs zero-shot | MS MARCO slice per seed "
          "| mean (sd) | vs zero-shot | s / epoch |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, label in VARIANTS.items():
        found = runs_of(name, args.seed42, args.runs)
        if not found:
            continue
        prefixes = [found[s] for s in sorted(found)]
        seeded[name] = prefixes
        cells, entry = [label, ", ".join(str(s) for s in sorted(found))], {"seeds": sorted(found)}
        for dataset in DATASETS:
            scores = [
                json.loads(Path(f"{p}.{dataset}.json").read_text())["metrics"]["NDCG@10"] for p in prefixes
            ]
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            delta, p = paired(zero[dataset], seed_mean(prefixes, dataset))
            cells += [", ".join(f"{s:.4f}" for s in scores), f"{statistics.fmean(scores):.4f} ({sd:.4f})",
                      f"{delta:+.4f} (p={p:.3f})"]  # fmt: skip
            entry[dataset] = {"ndcg@10": scores, "mean": statistics.fmean(scores), "sd": sd,
                              "vs_zero_shot": delta, "p": p}  # fmt: skip
        seconds = [s for s in (epoch_seconds(Path(p)) for p in prefixes) if s is not None]
        cells.append(f"{statistics.fmean(seconds):.0f}" if seconds else "-")
        entry["seconds_per_epoch"] = seconds
        result[name] = entry
        print("| " + " | ".join(cells) + " |")
    if {"pt2-lr1e-3", "pt2-nodrop"} <= set(seeded):
        print("\ndropout off vs on (seed-averaged per-query nDCG@10, paired t-test):")
        for dataset in DATASETS:
            delta, p = paired(
                seed_mean(seeded["pt2-lr1e-3"], dataset), seed_mean(seeded["pt2-nodrop"], dataset)
            )
            print(f"  {dataset}: {delta:+.4f} (p={p:.3f})")
            result.setdefault("dropout_off_vs_on", {})[dataset] = {"delta": delta, "p": p}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
