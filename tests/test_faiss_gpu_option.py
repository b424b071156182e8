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


def test_no_extra_installs_a_second_faiss_module():
    """faiss-cpu and faiss-gpu-cu12 both install the module ``faiss``: setup.cfg must never ask for two,
    and the documented command that swaps them removes faiss-cpu first."""
    import configparser
    import re
    from pathlib import Path

    from beir_peft.search.index_files import GPU_FAISS_COMMAND

    root = Path(__file__).resolve().parents[1]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg", encoding="utf-8")

    def faiss_wheels(text: str) -> set[str]:
        return {m.lower() for m in re.findall(r"^\s*(faiss[a-z0-9_-]*)", text, flags=re.M | re.I)}

    base = faiss_wheels(config.get("options", "install_requires"))
    assert base == {"faiss-cpu"}
    for extra, requirements in config.items("options.extras_require"):
        assert not faiss_wheels(requirements), f"extra {extra!r} adds a faiss wheel beside faiss-cpu"
    uninstall, install = GPU_FAISS_COMMAND.split("&&")
    assert "uninstall" in uninstall and "faiss-cpu" in uninstall and "faiss-gpu-cu12" in install
    assert GPU_FAISS_COMMAND in (root / "docs" / "usage.md").read_text(encoding="utf-8")
