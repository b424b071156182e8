"""``beir-peft evaluate --faiss-gpu``: reaches the searchers' ``use_gpu``; one-line errors without faiss-gpu."""

from __future__ import annotations

import faiss
import pytest

from beir_peft.cli import main

pytestmark = pytest.mark.usefixtures("no_network_data")


def _evaluate(capsys, *argv: str) -> tuple[int, str]:
    status = main(["evaluate", "-q", "--k-values", "1,10", *argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("search", ["exact", "faiss-hnsw"])
def test_faiss_gpu_needs_a_gpu_search(capsys, search):
    status, err = _evaluate(capsys, "--search", search, "--faiss-gpu")
    assert status == 2 and "Traceback" not in err
    assert "--faiss-gpu: only for --search faiss-flat or ann" in err


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is visible to faiss")
def test_faiss_gpu_without_faiss_gpu_is_one_line_error(capsys):
    status, err = _evaluate(capsys, "--search", "faiss-flat", "--faiss-gpu")
    assert status == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "faiss-gpu is not available" in errors[0], err
