"""The ``beir-peft`` command line through ``main([...])``: the demo dataset and all-MiniLM-L6-v2 only."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from beir_peft.cli import NEXT_DATASETS, main
from beir_peft.encoders.backbone import resolve_backbone

pytestmark = pytest.mark.usefixtures("no_network_data")

K = "1,10"  # few cut-offs keep the table and the JSON small
_ERROR_LINE = re.compile(r"^(error|Error): ", re.MULTILINE)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with its exit status, stdout and stderr."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_user_error(status: int, out: str, err: str, *needles: str) -> str:
    """Non-zero status, exactly one ``error:`` line on stderr, no traceback; returns that line."""
    assert status != 0, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = _ERROR_LINE.findall(err)
    assert len(lines) == 1, err
    line = next(line for line in err.splitlines() if _ERROR_LINE.match(line))
    for needle in needles:
        assert needle in line, line
    return line


def evaluate(capsys, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "evaluate", "-q", "--k-values", K, "--batch-size", "16", *extra)


# ------------------------------------------------------------------------------------- evaluate
def test_evaluate_demo_by_default(tmp_path, capsys):
    output, run_file = tmp_path / "result.json", tmp_path / "run.trec"
    status, out, err = evaluate(capsys, "--output", str(output), "--run-file", str(run_file))
    assert status == 0, err
    assert "Traceback" not in err
    # the table on stdout
    assert "NDCG" in out and "@10" in out and "Recall" in out
    ndcg_row = next(line for line in out.splitlines() if line.startswith("NDCG"))
    assert len(ndcg_row.split()) == 3  # name, @1, @10
    # a hint to try a real dataset next
    assert "demo" in err and f"--dataset {NEXT_DATASETS[0]}" in err
    # the JSON result
    result = json.loads(output.read_text(encoding="utf-8"))
    assert {"metrics", "ignore_identical_ids", "versions", "timings"} <= set(result)
    assert 0.0 <= result["metrics"]["NDCG@10"] <= 1.0
    assert result["metrics"]["NDCG@10"] == pytest.approx(float(ndcg_row.split()[2]), abs=1e-4)
    assert result["ignore_identical_ids"] is True
    assert isinstance(result["versions"], dict) and result["versions"]
    assert result["timings"]["total"] >= 0
    # the TREC run file: qid Q0 docid rank score run_name, ranks 1.. per query
    lines = run_file.read_text(encoding="utf-8").splitlines()
    assert lines
    ranks: dict[str, list[int]] = {}
    for line in lines:
        qid, q0, doc_id, rank, score, name = line.split()
        assert q0 == "Q0" and name
        assert doc_id.startswith("d")
        float(score)
        ranks.setdefault(qid, []).append(int(rank))
    assert set(ranks) == {f"q{i:02d}" for i in range(1, 21)}
    assert all(r == list(range(1, len(r) + 1)) for r in ranks.values())


def test_faiss_flat_matches_exact_search(tmp_path, capsys):
    scores = {}
    for search in ("exact", "faiss-flat"):
        output = tmp_path / f"{search}.json"
        status, _, err = evaluate(capsys, "--dataset", "demo", "--search", search, "--output", str(output))
        assert status == 0, err
        scores[search] = json.loads(output.read_text(encoding="utf-8"))["metrics"]["NDCG@10"]
    assert scores["faiss-flat"] == pytest.approx(scores["exact"], abs=1e-6)


# ------------------------------------------------------------------------------------- bad input
def test_unknown_dataset(capsys, monkeypatch):
    monkeypatch.delenv("BEIR_PEFT_DATASET_URL")  # a name BEIR does not have: no download attempted
    status, out, err = evaluate(capsys, "--dataset", "nosuchdataset")
    assert status == 2
    assert_user_error(status, out, err, "unknown dataset 'nosuchdataset'", "--dataset /path/to/nosuchdataset")


def test_unreachable_beir_dataset(capsys):
    status, out, err = evaluate(capsys, "--dataset", "scifact")
    assert status == 2
    assert_user_error(status, out, err, "scifact", "BEIR_PEFT_DATA")


def test_missing_model_folder(tmp_path, capsys):
    status, out, err = evaluate(capsys, "--model", str(tmp_path / "no-such-model"))
    assert status == 2
    assert_user_error(status, out, err, "no-such-model")


def test_model_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a model")
    status, out, err = evaluate(capsys, "--model", str(path))
    assert_user_error(status, out, err, "model.bin")


def test_folder_that_is_not_a_model(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n", encoding="utf-8")
    status, out, err = evaluate(capsys, "--model", str(folder))
    assert status == 2
    assert_user_error(status, out, err, "not-a-model")


def test_sentence_transformers_folder_with_corrupted_config(tmp_path, capsys):
    # a copy of the real model whose files are links, except a broken config.json
    folder = tmp_path / "minilm"
    shutil.copytree(resolve_backbone("sentence-transformers/all-MiniLM-L6-v2"), folder, copy_function=_link)
    (folder / "config.json").unlink()  # never write through the link into the installed model
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": ', encoding="utf-8")
    status, out, err = evaluate(capsys, "--model", str(folder))
    assert status == 2
    assert_user_error(status, out, err, "minilm")


def _link(src, dst):
    Path(dst).symlink_to(Path(src).resolve())


def test_beir_peft_folder_with_corrupted_config(trained_run, tmp_path, capsys):
    folder = tmp_path / "broken"
    shutil.copytree(trained_run["folder"], folder)
    (folder / "config.json").write_text('{"format_version": 1, "method": "pt2-dpr", ', encoding="utf-8")
    status, out, err = evaluate(capsys, "--model", str(folder))
    assert status == 2
    assert_user_error(status, out, err, "config.json", "invalid JSON")


@pytest.mark.parametrize("k_values", ["1,x", "0,10", ",", "-5"])
def test_bad_k_values(capsys, k_values):
    status, out, err = run(capsys, "evaluate", "-q", f"--k-values={k_values}")
    assert status == 2
    assert_user_error(status, out, err, "--k-values")


def test_unknown_search(capsys):
    status, out, err = run(capsys, "evaluate", "-q", "--search", "annoy")
    assert status == 2
    assert_user_error(status, out, err, "--search", "annoy")


def test_evaluate_bm25(capsys):
    status, out, err = evaluate(capsys, "--model", "bm25")
    assert status == 0, err
    assert "BM25" in err and "NDCG" in out
    status, out, err = evaluate(capsys, "--model", "bm25", "--search", "faiss-flat")
    assert_user_error(status, out, err, "BM25", "--search")


def test_ann_options_need_ann_search(capsys):
    status, out, err = evaluate(capsys, "--nprobe", "4", "--index-factory", "Flat")
    assert status == 2
    assert_user_error(status, out, err, "--nprobe, --index-factory", "--search ann")


def test_malformed_dataset_file(tmp_path, capsys):
    folder = tmp_path / "bad"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": "broken\n', encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "query"}\n', encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    status, out, err = evaluate(capsys, "--dataset", str(folder))
    assert status == 2
    assert_user_error(status, out, err, str(folder / "corpus.jsonl"), "line 2")


def test_unknown_split(capsys):
    status, out, err = evaluate(capsys, "--split", "dev")
    assert status == 2
    assert_user_error(status, out, err, "unknown split 'dev'", "test, train")


def test_unknown_command_and_method(capsys):
    status, out, err = run(capsys, "summarize")
    assert_user_error(status, out, err)
    status, out, err = run(capsys, "train", "dpr++", "--output", "x")
    assert_user_error(status, out, err, "dpr++")


def test_help_and_version(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "evaluate" in out and "train" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip()


# ------------------------------------------------------------------------------------- train
TRAIN = ("train", "pt2-dpr", "--split", "train", "--max-steps", "2", "--batch-size", "4", "-q")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """``train pt2-dpr`` for 2 steps on the demo train split, run once for the module."""
    folder = tmp_path_factory.mktemp("cli_train") / "pt2"
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEIR_PEFT_CACHE", str(tmp_path_factory.mktemp("cli_cache")))
        mp.setenv("BEIR_PEFT_DATASET_URL", "http://127.0.0.1:9/{name}.zip")
        mp.delenv("BEIR_PEFT_DATA", raising=False)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*TRAIN, "--dataset", "demo", "--output", str(folder)])
    return {"status": status, "folder": folder, "out": out.getvalue(), "err": err.getvalue()}


def test_train_then_evaluate_the_saved_folder(trained_run, capsys):
    assert trained_run["status"] == 0, trained_run["err"]
    folder = trained_run["folder"]
    assert "Traceback" not in trained_run["err"]
    assert (folder / "config.json").is_file() and (folder / "weights.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["method"] == "pt2-dpr"
    assert config["training"]["steps"] == 2
    assert config["training"]["dataset"] == "demo" and config["training"]["split"] == "train"
    assert f"--model {folder}" in trained_run["err"]

    status, out, err = evaluate(capsys, "--model", str(folder), "--dataset", "demo")
    assert status == 0, err
    assert "NDCG" in out
    assert "pt2-dpr" in err


def test_training_into_an_existing_run_is_refused(trained_run, capsys):
    folder = trained_run["folder"]
    before = (folder / "config.json").read_bytes()
    status, out, err = run(capsys, *TRAIN, "--output", str(folder))
    assert status == 2
    assert_user_error(status, out, err, str(folder), "--resume", "--overwrite")
    assert (folder / "config.json").read_bytes() == before


def test_resume_a_finished_run(trained_run, capsys):
    folder = trained_run["folder"]
    before = (folder / "config.json").read_bytes()
    status, _, err = run(capsys, *TRAIN, "--output", str(folder), "--resume")
    assert status == 0, err
    assert "Traceback" not in err
    assert (folder / "config.json").read_bytes() == before  # nothing left to train


def test_unknown_set_option(tmp_path, capsys):
    folder = tmp_path / "run"
    status, out, err = run(capsys, *TRAIN, "--output", str(folder), "--set", "unknown_option=1")
    assert status == 2
    assert_user_error(status, out, err, "unknown_option")
    assert not (folder / "config.json").exists()


def test_malformed_set_option(tmp_path, capsys):
    status, out, err = run(capsys, *TRAIN, "--output", str(tmp_path / "run"), "--set", "no-equals-sign")
    assert status == 2
    assert_user_error(status, out, err, "KEY=VALUE")


def test_bm25_negatives_need_hard_negatives(tmp_path, capsys):
    status, out, err = run(capsys, *TRAIN, "--output", str(tmp_path / "r"), "--negatives", "bm25")
    assert status == 2
    assert_user_error(status, out, err, "--negatives bm25", "--hard-negatives")


def test_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    status, out, err = run(capsys, *TRAIN, "--output", str(tmp_path / "run"), "--resume", "--overwrite")
    assert status == 2
    assert_user_error(status, out, err, "--resume", "--overwrite")
    assert not (tmp_path / "run").exists()


def test_train_on_a_split_that_does_not_exist(tmp_path, capsys):
    status, out, err = run(
        capsys, "train", "pt2-dpr", "--split", "dev", "-q", "--output", str(tmp_path / "run")
    )
    assert status == 2
    assert_user_error(status, out, err, "unknown split 'dev'")


def test_resume_refuses_a_finished_run_of_another_method(trained_run, capsys):
    folder = trained_run["folder"]
    before = (folder / "config.json").read_bytes()
    lora = ("train", "lora", *TRAIN[2:])
    status, out, err = run(capsys, *lora, "--output", str(folder), "--resume")
    assert status == 2
    assert_user_error(status, out, err, str(folder), "method: 'pt2-dpr' -> 'lora'")
    assert "saved" not in err
    assert (folder / "config.json").read_bytes() == before


def test_resume_refuses_a_finished_run_on_other_data(trained_run, capsys):
    folder = trained_run["folder"]
    before = (folder / "config.json").read_bytes()
    status, out, err = run(capsys, *TRAIN, "--split", "test", "--output", str(folder), "--resume")
    assert status == 2
    assert_user_error(status, out, err, str(folder), "split: 'train' -> 'test'")
    assert (folder / "config.json").read_bytes() == before


def test_saved_weights_have_the_mode_of_the_config(trained_run):
    folder = trained_run["folder"]
    modes = {name: (folder / name).stat().st_mode & 0o777 for name in ("config.json", "weights.safetensors")}
    assert modes["weights.safetensors"] == modes["config.json"], modes


def test_junk_in_a_local_folder_is_not_called_a_network_problem(tmp_path, capsys):
    folder = tmp_path / "junk-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    status, out, err = evaluate(capsys, "--model", str(folder))
    line = assert_user_error(status, out, err, "junk-model")
    assert "no network" not in line


# ------------------------------------------------------------------------------------- outputs
def _refuse_work(monkeypatch) -> None:
    """Reading data, loading or building a model, evaluating or training now fail the test."""
    import beir_peft.data
    import beir_peft.evaluation
    import beir_peft.methods.supervised
    import beir_peft.models.loading
    import beir_peft.models.tuned

    def work(*args, **kwargs):
        raise AssertionError("the work started before the outputs were checked")

    for module, name in (
        (beir_peft.data, "load_dataset"),
        (beir_peft.data, "resolve_dataset"),
        (beir_peft.models.loading, "load_model"),
        (beir_peft.models.tuned, "build_retriever"),
        (beir_peft.evaluation, "evaluate_retriever"),
        (beir_peft.methods.supervised, "train"),
    ):
        monkeypatch.setattr(module, name, work)


@pytest.mark.parametrize(
    ("option", "name"), [("--output", "r.json"), ("--run-file", "r.trec"), ("--index-dir", "i")]
)
def test_evaluate_output_under_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch, option, name):
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    _refuse_work(monkeypatch)
    status, out, err = evaluate(capsys, "--search", "faiss-flat", option, str(tmp_path / "a-file" / name))
    assert status == 2
    assert_user_error(status, out, err, option, f"{tmp_path / 'a-file'} is a file")


def test_train_output_under_a_file_is_refused_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    _refuse_work(monkeypatch)
    status, out, err = run(capsys, *TRAIN, "--output", str(tmp_path / "a-file" / "run"))
    assert status == 2
    assert_user_error(status, out, err, "--output", f"{tmp_path / 'a-file'} is a file")


@pytest.mark.parametrize(
    "command",
    [
        ("analyze", "calibration", "--run", "RUNS/none.trec", "--output", "OUT"),
        ("analyze", "query-length", "--run", "RUNS/none.trec", "--plot", "OUT"),
        ("compare", "--model", "bm25", "--dataset", "demo", "--output-dir", "OUT"),
        ("adapt", "gpl", "--dataset", "demo", "--output", "OUT"),
        ("adapt", "qgen", "--dataset", "demo", "--output", "OUT"),
        ("adapt", "art", "--dataset", "demo", "--questions", "train", "--output", "OUT"),
        ("ddr", "dam", "--corpus", "demo", "--output", "OUT"),
        ("ddr", "rem", "--dataset", "demo", "--dam", "DAM", "--output", "OUT"),
        ("ddr", "assemble", "--dam", "DAM", "--rem", "REM", "--output", "OUT"),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_every_command_checks_its_output_first(tmp_path, capsys, monkeypatch, command):
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    _refuse_work(monkeypatch)
    replace = {"OUT": str(tmp_path / "a-file" / "out"), "RUNS": str(tmp_path), "DAM": str(tmp_path / "dam"),
               "REM": str(tmp_path / "rem")}  # fmt: skip
    argv = [replace.get(arg, arg.replace("RUNS", str(tmp_path))) for arg in command]
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert_user_error(status, out, err, f"{tmp_path / 'a-file'} is a file")


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import os

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    real_access = os.access
    # root may write into a 0o555 folder (and os.access says so): deny it the way it is denied to others
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: Path(path) != folder and real_access(path, mode)
    )
    _refuse_work(monkeypatch)
    status, out, err = evaluate(capsys, "--output", str(folder / "result.json"))
    assert status == 2
    assert_user_error(status, out, err, "--output", f"no permission to write in {folder}")
    folder.chmod(0o755)


def test_read_only_file_system_is_found_by_a_real_write(tmp_path, capsys, monkeypatch):
    import errno

    import beir_peft.io

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(beir_peft.io, "_create_temp_file", read_only)  # what os.access cannot see
    _refuse_work(monkeypatch)
    status, out, err = run(capsys, *TRAIN, "--output", str(tmp_path / "run"))
    assert status == 2
    assert_user_error(status, out, err, "--output", "Read-only file system")


def test_a_failed_write_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    import beir_peft.evaluation

    output = tmp_path / "result.json"

    def disk_full(result, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(beir_peft.evaluation, "write_result_json", disk_full)
    status, out, err = evaluate(capsys, "--model", "bm25", "--output", str(output))
    assert status == 1
    assert_user_error(status, out, err, "No space left on device", str(output))


def test_run_file_is_written_before_the_result_json(tmp_path, capsys, monkeypatch):
    import beir_peft.evaluation

    def killed(results, path, **kwargs):
        raise KeyboardInterrupt  # the run dies while its run file is written

    monkeypatch.setattr(beir_peft.evaluation, "write_run_file", killed)
    output, run_file = tmp_path / "result.json", tmp_path / "run.trec"
    status, _, _ = evaluate(capsys, "--model", "bm25", "--output", str(output), "--run-file", str(run_file))
    assert status == 130
    assert not output.exists()  # no result file without its run file


def test_stale_temporary_files_are_removed_on_the_next_run(tmp_path, capsys):
    import os
    import socket
    import subprocess
    import sys

    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())  # as temporary names spell it
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    stale = [
        tmp_path / ".run.trec.k3j4h5g6.tmp",  # a killed run of an older version (tempfile's name)
        tmp_path / f".result.json.{dead_pid}@{host}.0a1b2c3d.tmp",  # its process is gone
    ]
    alive = [
        tmp_path / f".run.trec.{os.getppid()}@{host}.0a1b2c3d.tmp",  # a writer still running
        tmp_path / f".run.trec.{dead_pid}@some-other-host.0a1b2c3d.tmp",  # cannot be checked from here
    ]
    for path in stale + alive:
        path.write_text("half a file", encoding="utf-8")
    output, run_file = tmp_path / "result.json", tmp_path / "run.trec"
    status, _, err = evaluate(capsys, "--model", "bm25", "--output", str(output), "--run-file", str(run_file))
    assert status == 0, err
    assert output.is_file() and run_file.is_file()
    assert [path for path in stale if path.exists()] == []
    assert all(path.exists() for path in alive)


def test_whitespace_ids_are_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "spaced"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "text": "one"}\n{"_id": "d 2", "text": "two"}\n', encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "query"}\n', encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    _refuse_work_after_loading(monkeypatch)
    output, run_file = tmp_path / "result.json", tmp_path / "run.trec"
    status, out, err = evaluate(
        capsys, "--dataset", str(folder), "--output", str(output), "--run-file", str(run_file)
    )
    assert status == 2
    assert_user_error(status, out, err, str(folder / "corpus.jsonl"), "line 2", "'d 2'", "whitespace")
    assert not output.exists() and not run_file.exists()


def _refuse_work_after_loading(monkeypatch) -> None:
    import beir_peft.evaluation
    import beir_peft.models.loading

    def work(*args, **kwargs):
        raise AssertionError("the model was loaded or evaluated before the ids were checked")

    monkeypatch.setattr(beir_peft.models.loading, "load_model", work)
    monkeypatch.setattr(beir_peft.evaluation, "evaluate_retriever", work)
