"""Training and encoding throughput on N processes against one, through the commands users run.

What is measured, each command in its own launcher run (``torchrun --standalone --nproc_per_node
N -m beir_peft.cli ...``; N = 1 runs the same command without a launcher):

* training: ``train pt2-dpr`` on ``--dataset``'s train split for ``--steps`` optimizer steps with
  a global batch of ``--global-batch`` (each of N processes takes ``global / N`` rows: the same
  batches, negatives and loss as one process), read back from the folder's training record
  (``epoch_seconds``: the loop's own time, without loading and mining); reported: training rows per
  second and the ratio to one process;
* encoding: ``evaluate --vectors-dir`` of one model (the first process count's trained folder, so
  every N evaluates the same weights) on ``--dataset``'s test split (the corpus encoded in ``.npy``
  shards split across the N processes, then searched in bounded chunks), at ``--max-seq-length``
  tokens: the evaluation's own ``search`` time from the result JSON (encoding plus search),
  documents per second and the ratio to one process;
* the wall time of every command (loading included), and whether the N-process evaluation's
  metrics equal the 1-process one's (the same model, so they must). The trained models differ by
  their dropout masks, so their losses are reported, not compared.

On a 2-core CPU the expectation is parity at best (two gloo processes share the cores the one
process used); the point there is that the runs are correct. On a GPU machine run it with
``--processes 1,2,4,8`` (one process per GPU, NCCL).

Example::

    BEIR_PEFT_DATA=../shared/datasets python benchmarks/processes_throughput.py
    python benchmarks/processes_throughput.py --dataset demo --steps 2 --global-batch 8 --output /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, print_table  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "processes_throughput.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--threads-per-process", type=int, default=None,
                        help="OMP threads per process (default: the cores divided by N)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def launcher(n: int) -> list[str]:
    if n == 1:
        return [sys.executable, "-m", "beir_peft.cli"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        "-m",
        "beir_peft.cli",
    ]


def run(command: list[str], threads: int) -> float:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main(argv=None) -> dict:
    args = parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="processes_bench_"))
    rows = {}
    try:
        for n in counts:
            if args.global_batch % n:
                raise SystemExit(f"--global-batch {args.global_batch} does not split over {n} processes")
            threads = args.threads_per_process or max(1, cores // n)
            folder = work / f"train-{n}"
            train = [*launcher(n), "train", "pt2-dpr", "--dataset", args.dataset, "--split", "train",
                     "--output", str(folder), "--batch-size", str(args.global_batch // n), "--max-steps",
                     str(args.steps), "--checkpoint-every", "0", "--set", f"max_seq_length={args.max_seq_length}",
                     "-q"]  # fmt: skip
            train_wall = run(train, threads)
            record = json.loads((folder / "config.json").read_text())["training"]
            loop_seconds = sum(record["epoch_seconds"])
            result_file = work / f"eval-{n}.json"
            evaluated_model = work / f"train-{counts[0]}"  # one model for every N: the same nDCG
            evaluate = [*launcher(n), "evaluate", "--dataset", args.dataset, "--model", str(evaluated_model),
                        "--vectors-dir", str(work / f"vectors-{n}"), "--output", str(result_file), "-q"]  # fmt: skip
            eval_wall = run(evaluate, threads)
            evaluated = json.loads(result_file.read_text())
            rows[n] = {
                "threads_per_process": threads,
                "train": {"steps": record["steps"], "world_size": record.get("world_size", 1),
                          "loop_seconds": round(loop_seconds, 2), "wall_seconds": round(train_wall, 2),
                          "rows_per_second": round(record["steps"] * args.global_batch / loop_seconds, 2),
                          "first_loss": record.get("first_loss"), "last_loss": record.get("last_loss")},
                "encode_and_search": {"seconds": round(evaluated["timings"]["search"], 2),
                                      "wall_seconds": round(eval_wall, 2),
                                      "docs_per_second": round(evaluated["config"]["num_docs"]
                                                               / evaluated["timings"]["search"], 2),
                                      "NDCG@10": evaluated["metrics"]["NDCG@10"]},
            }  # fmt: skip
        base = rows[counts[0]]
        for row in rows.values():
            row["train"]["ratio_to_first"] = round(
                row["train"]["rows_per_second"] / base["train"]["rows_per_second"], 3
            )
            enc = row["encode_and_search"]
            enc["ratio_to_first"] = round(
                enc["docs_per_second"] / base["encode_and_search"]["docs_per_second"], 3
            )
            enc["same_ndcg_as_first"] = abs(enc["NDCG@10"] - base["encode_and_search"]["NDCG@10"]) < 1e-6
        result = {
            "benchmark": "processes_throughput",
            "parameters": {
                "dataset": args.dataset,
                "processes": counts,
                "steps": args.steps,
                "global_batch": args.global_batch,
                "max_seq_length": args.max_seq_length,
            },  # fmt: skip
            "rows": {str(n): row for n, row in rows.items()},
            "machine": {
                **machine_info(__import__("torch").device("cpu")),
                "load_average_at_end": list(os.getloadavg()),
            },
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        from beir_peft.io import write_json_atomic

        write_json_atomic(args.output, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        ["processes", "train rows/s", "vs first", "encode+search docs/s", "vs first", "same nDCG@10"],
        [[n, r["train"]["rows_per_second"], r["train"]["ratio_to_first"], r["encode_and_search"]["docs_per_second"],
          r["encode_and_search"]["ratio_to_first"], r["encode_and_search"]["same_ndcg_as_first"]]
         for n, r in rows.items()],
    )  # fmt: skip
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
