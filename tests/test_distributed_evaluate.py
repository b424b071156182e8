"""``evaluate`` on 2 gloo processes (torchrun, CPU) gives the run file of one process.

The default model (the offline all-MiniLM-L6-v2) on the bundled demo dataset; the corpus is encoded
in 6 shards, 3 per process. About a minute on 2 cores (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beir_peft.cli import main

pytestmark = pytest.mark.usefixtures("no_network_data")

REPO = Path(__file__).resolve().parents[1]


def read_run(path: Path) -> dict[str, list[tuple[str, float]]]:
    """``{query_id: [(doc_id, score), ...]}`` in rank order, from a TREC run file."""
    run: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, doc_id, _, score, _ = line.split()
        run.setdefault(qid, []).append((doc_id, float(score)))
    return run


def assert_same_rankings(run: dict, expected: dict, tol: float = 1e-5) -> None:
    """Same queries, same documents in the same order, except where scores tie within ``tol``."""
    assert run.keys() == expected.keys()
    for qid, want in expected.items():
        got = run[qid]
        assert len(got) == len(want)
        for (doc, score), (want_doc, want_score) in zip(got, want, strict=True):
            assert score == pytest.approx(want_score, abs=tol)
            if doc != want_doc:  # only a float tie may swap two documents
                assert dict(want)[doc] == pytest.approx(score, abs=tol), (qid, doc, want_doc)


def test_two_processes_write_the_run_of_one(tmp_path, capsys):
    one = tmp_path / "one.trec"
    assert main(["evaluate", "-q", "--batch-size", "16", "--run-file", str(one)]) == 0
    capsys.readouterr()

    two, result, vectors = tmp_path / "two.trec", tmp_path / "two.json", tmp_path / "vectors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "beir_peft.cli", "evaluate", "-q", "--batch-size", "16", "--run-file", str(two),
               "--output", str(result), "--vectors-dir", str(vectors), "--shard-size", "10"]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    assert_same_rankings(read_run(two), read_run(one))
    assert done.stdout.count("NDCG") == 1  # rank 0 alone prints the table
    config = json.loads(result.read_text(encoding="utf-8"))["config"]
    assert config["world_size"] == 2 and config["search_options"]["vectors_dir"] == str(vectors)
    assert (
        len(list(vectors.glob("shard-*.npy"))) == 6
    )  # 53 passages: shards 0, 2, 4 on rank 0; 1, 3, 5 on rank 1
