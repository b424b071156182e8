"""``beir-peft compare``: the paired t-test, the config file, cached runs, and the report files."""

from __future__ import annotations

import json
import math

import pytest
import scipy.stats
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft.analysis.compare import CompareConfig, write_report
from beir_peft.analysis.significance import paired_t_test
from beir_peft.cli import main
from beir_peft.errors import ConfigError
from beir_peft.pipelines.compare import run_comparison

pytestmark = pytest.mark.usefixtures("no_network_data")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------- significance
def test_paired_t_test_matches_scipy():
    a = {"q1": 0.2, "q2": 0.5, "q3": 0.9, "q4": 0.1, "q5": 0.7}
    b = {"q1": 0.4, "q2": 0.6, "q3": 0.8, "q4": 0.5, "q5": 0.9}
    test = paired_t_test(a, b, sorted(a))
    expected = scipy.stats.ttest_rel([b[q] for q in sorted(a)], [a[q] for q in sorted(a)])
    assert test.p_value == pytest.approx(expected.pvalue) and test.t_statistic == pytest.approx(
        expected.statistic
    )
    assert test.delta == pytest.approx(0.16) and test.queries == 5
    # hand computation: differences 0.2, 0.1, -0.1, 0.4, 0.2 -> t = mean / (sd / sqrt(n))
    diffs = [0.2, 0.1, -0.1, 0.4, 0.2]
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    assert test.t_statistic == pytest.approx(mean / (sd / math.sqrt(5)))


def test_paired_t_test_edge_cases():
    same = {"q1": 0.3, "q2": 0.6}
    assert paired_t_test(same, same, ["q1", "q2"]).p_value == 1.0
    shifted = {"q1": 0.5, "q2": 0.75}  # every query +0.2 / +0.15, exactly representable
    test = paired_t_test({"q1": 0.25, "q2": 0.5}, {"q1": 0.5, "q2": 0.75}, ["q1", "q2"])
    assert test.p_value == 0.0 and test.t_statistic == math.inf and test.delta == 0.25  # constant shift
    assert paired_t_test(same, shifted, ["q1", "q2"]).p_value < 0.2
    # a query missing from one run scores 0 there
    assert paired_t_test(same, {"q1": 0.3}, ["q1", "q2"]).mean_b == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="at least 2"):
        paired_t_test(same, same, ["q1"])


# ------------------------------------------------------------------------------- config
def test_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  a: bm25\n  b: some/model\ndatasets: demo\nbaseline: b\n", encoding="utf-8")
    config = CompareConfig.from_file(path)
    assert config.models == {"a": "bm25", "b": "some/model"} and config.datasets == ["demo"]
    assert config.baseline == "b" and config.split == "test"
    path.write_text("models: [bm25, runs/pt2/]\ndatasets: [demo]\n", encoding="utf-8")
    assert CompareConfig.from_file(path).models == {"bm25": "bm25", "pt2": "runs/pt2/"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {a: bm25\n", "line"),
        ("models: {a: bm25}\ndatasets: [demo]\nmetric: x\n", r"unknown key\(s\) metric"),
        ("models: {a: bm25}\ndatasets: [demo]\nbaseline: z\n", "baseline 'z'"),
        ("models: {a/b: bm25}\ndatasets: [demo]\n", "model name 'a/b'"),
        ("models: {a: bm25}\n", "'datasets' must be a list"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        CompareConfig.from_file(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------- running
@pytest.fixture
def tiny_folder(tmp_path):
    backbone = build_tiny_bert(tmp_path / "tiny")
    model = beir_peft.PT2DPR(str(backbone), prefix_length=4)
    model.save(tmp_path / "pt2")
    return tmp_path / "pt2"


def test_runs_are_cached_and_invalidated(tmp_path, tiny_folder):
    config = CompareConfig(models={"bm25": "bm25", "tiny": str(tiny_folder)}, datasets=["demo"])
    out = tmp_path / "report"
    first = run_comparison(config, out, show_progress_bar=False)
    assert not any(p.cached for p in first.results["demo"].values())
    assert (out / "runs" / "tiny" / "demo.test.trec").is_file()
    second = run_comparison(config, out, show_progress_bar=False)
    assert all(p.cached for p in second.results["demo"].values())
    assert second.results["demo"]["tiny"].metrics == first.results["demo"]["tiny"].metrics
    # new weights in the folder: only that model is evaluated again
    model = beir_peft.load(tiny_folder)
    with torch_no_grad():
        model.trainable_parameters()[0].add_(0.5)
    model.save(tiny_folder)
    third = run_comparison(config, out, show_progress_bar=False)
    assert third.results["demo"]["bm25"].cached and not third.results["demo"]["tiny"].cached

    test = first.tests["demo"]["tiny"]
    assert set(first.tests["demo"]) == {"tiny"}  # the baseline is not tested against itself
    assert test["delta"] == pytest.approx(test["mean_b"] - test["mean_a"])
    assert first.facts["tiny"]["trained_parameters"] == model.trainable_parameter_count()
    assert first.facts["bm25"]["artifact_bytes"] == 0 and first.facts["tiny"]["artifact_bytes"] > 0

    written = write_report(first, out)
    assert {p.name for p in written} == {"report.md", "report.csv", "report.json", "report_ndcg10.png"}
    assert (out / "report_ndcg10.png").read_bytes()[:8] == PNG_MAGIC
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "`tiny`" in markdown and "p=" in markdown and "demo nDCG@10" in markdown
    rows = (out / "report.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and rows[0].startswith("dataset,model")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["datasets"]["demo"]["models"]["tiny"]["vs_baseline"]["p_value"] == test["p_value"]


def test_a_run_is_not_reused_for_an_edited_corpus(tmp_path):
    """Same dataset folder, name and counts, one passage rewritten: the cached run is stale."""
    import shutil

    from beir_peft.data import demo_dataset_path

    folder = tmp_path / "demo"
    shutil.copytree(demo_dataset_path(), folder)
    config = CompareConfig(models={"bm25": "bm25"}, datasets=[str(folder)])
    out = tmp_path / "report"
    run_comparison(config, out, show_progress_bar=False)
    (pairs,) = run_comparison(config, out, show_progress_bar=False).results.values()
    assert all(p.cached for p in pairs.values())
    corpus = folder / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["text"] = "an entirely different passage about volcanoes"
    corpus.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n", encoding="utf-8")
    (pairs,) = run_comparison(config, out, show_progress_bar=False).results.values()
    assert not any(p.cached for p in pairs.values())


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_cli_compare(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  bm25: bm25\ndatasets: [demo]\n", encoding="utf-8")
    status = main(["compare", str(config), "-m", "minilm=sentence-transformers/all-MiniLM-L6-v2",
                   "-o", str(tmp_path / "r"), "-q", "--no-plot"])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "`minilm`" in out and "`bm25`" in out and not (tmp_path / "r" / "report_ndcg10.png").exists()
    status = main(["compare", "-o", str(tmp_path / "r"), "-q"])
    _, err = capsys.readouterr()
    assert status == 2 and "--model" in err and "Traceback" not in err
    status = main(["compare", str(config), "-m", "bm25=bm25", "-o", str(tmp_path / "r"), "-q"])
    _, err = capsys.readouterr()
    assert status == 2 and "already a model" in err


def test_adopting_an_existing_run(tmp_path, capsys):
    from beir_peft.evaluation import write_run_file

    run = tmp_path / "bm25.trec"
    assert main(["evaluate", "--model", "bm25", "-q", "--run-file", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "r"
    status = main(["compare", "-m", "bm25=bm25", "-m", "minilm=sentence-transformers/all-MiniLM-L6-v2", "-d", "demo",
                   "--adopt", f"bm25:demo={run}", "-o", str(out), "-q", "--no-plot"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    assert "bm25 on demo: adopted" in err and "minilm on demo: evaluating" in err
    note = json.loads((out / "runs" / "bm25" / "demo.test.json").read_text())
    assert note["adopted_from"] == str(run.resolve())
    # a rerun uses the cache for both
    assert main(["compare", "-m", "bm25=bm25", "-m", "minilm=sentence-transformers/all-MiniLM-L6-v2", "-d", "demo",
                 "-o", str(out), "-q", "--no-plot"]) == 0  # fmt: skip
    assert capsys.readouterr().err.count("cached run") == 2
    bad = tmp_path / "bad.trec"
    write_run_file({"q1": {"d1": 1.0}}, bad)
    bad.write_text("not a run line\n")
    assert main(["compare", "-m", "bm25=bm25", "-d", "demo", "--adopt", f"bm25:demo={bad}", "-o",
                 str(tmp_path / "r2"), "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "bad.trec line 1" in err and "Traceback" not in err
    assert main(["compare", "-m", "bm25=bm25", "-d", "demo", "--adopt", f"x:demo={run}", "-o", str(tmp_path / "r3"),
                 "-q"]) == 2  # fmt: skip
    assert "cannot adopt" in capsys.readouterr().err
