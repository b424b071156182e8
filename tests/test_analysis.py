"""Calibration (ECE), query-length buckets, TREC run reading, plots and the ``beir-peft analyze`` commands.

Everything runs on hand-made runs or on the bundled demo dataset with a lexical-overlap scorer: no model.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys

import pytest

from beir_peft.analysis.calibration import (
    assign_bins,
    bin_edges,
    calibration,
    ece_from_samples,
    format_calibration_table,
    plot_reliability,
)
from beir_peft.analysis.query_length import (
    assign_bucket,
    bucket_edges,
    plot_query_length,
    query_length,
    query_length_analysis,
)
from beir_peft.analysis.runs import read_run_file
from beir_peft.cli import main
from beir_peft.errors import ConfigError, DatasetError
from beir_peft.evaluation import write_run_file

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------- ECE
def _three_queries():
    """Three queries, five documents each, with softmax probabilities that are easy to work out.

    A: five equal scores -> 0.2 each (exactly: 1/5); relevant a1, the first by id.
    B: e^s = 2 for b1 -> 2/6 = 1/3, the other four 1/6; relevant b1 (the top one).
    C: e^s = 12 for c1 -> 12/16 = 0.75, the other four 1/16; relevant c2 (not the top one).
    """
    qrels = {"A": {"a1": 1}, "B": {"b1": 2, "b3": 0}, "C": {"c2": 1}, "unretrieved": {"x": 1}}
    run = {
        "A": {f"a{i}": 0.0 for i in range(1, 6)},
        "B": {"b1": math.log(2), **{f"b{i}": 0.0 for i in range(2, 6)}},
        "C": {"c1": math.log(12), **{f"c{i}": 0.0 for i in range(2, 6)}},
        "no-qrels": {f"z{i}": float(i) for i in range(5)},
    }
    return qrels, run


def test_pooled_ece_by_hand():
    qrels, run = _three_queries()
    result = calibration(qrels, run)  # pooled is the default
    assert result.definition == "pooled"
    # bin 0 (0, .1]: C's four 1/16 (one relevant); bin 1 (.1, .2]: A's five 0.2 (the edge 0.2 closes
    # bin 1; one relevant) and B's four 1/6 (none); bin 3: B's 1/3 (relevant); bin 7: C's 0.75 (not).
    assert result.counts == [4, 9, 0, 1, 0, 0, 0, 1, 0, 0]
    assert result.accuracy[0] == pytest.approx(0.25)
    assert result.confidence[0] == pytest.approx(0.0625)
    assert result.accuracy[1] == pytest.approx(1 / 9)
    assert result.confidence[1] == pytest.approx(5 / 27)
    assert result.accuracy[3] == 1.0 and result.accuracy[7] == 0.0
    # empty bins are skipped: no accuracy, no confidence, no weight
    assert result.accuracy[2] is None and result.confidence[2] is None
    # (4 * 3/16 + 9 * 2/27 + 2/3 + 3/4) / 15
    assert result.ece == pytest.approx(17 / 90)
    assert result.num_queries == 3 and result.num_samples == 15
    assert result.num_skipped == 1  # "unretrieved": judged, but not in the run
    assert result.overall_accuracy == pytest.approx(3 / 15)
    assert result.bin_edges == pytest.approx([m / 10 for m in range(11)])
    json.dumps(result.to_json())


def test_top_label_ece_by_hand():
    qrels, run = _three_queries()
    result = calibration(qrels, run, definition="top-label")
    # A: 0.2, correct (ties go by doc id: a1 is the top); B: 1/3, correct; C: 0.75, wrong
    assert result.counts == [0, 1, 0, 1, 0, 0, 0, 1, 0, 0]
    assert result.accuracy[1] == 1.0 and result.accuracy[3] == 1.0 and result.accuracy[7] == 0.0
    assert result.ece == pytest.approx((0.8 + 2 / 3 + 0.75) / 3)
    assert result.num_samples == result.num_queries == 3


def test_perfectly_calibrated_runs_give_zero():
    # pooled: every top-5 document has probability 0.2 and exactly one in five is relevant
    qrels = {f"q{i}": {f"q{i}d{i % 5}": 1} for i in range(4)}
    run = {f"q{i}": {f"q{i}d{j}": 3.0 for j in range(5)} for i in range(4)}
    pooled = calibration(qrels, run)
    assert pooled.ece == pytest.approx(0.0, abs=1e-12)
    assert pooled.counts[1] == 20 and sum(pooled.counts) == 20
    # top-label: top probability 4/8 = 0.5 for both queries, one of the two tops relevant
    qrels = {"q1": {"d1": 1}, "q2": {"e2": 1}}
    run = {
        "q1": {"d1": math.log(4), **{f"d{j}": 0.0 for j in range(2, 6)}},
        "q2": {"e1": math.log(4), **{f"e{j}": 0.0 for j in range(2, 6)}},
    }
    top = calibration(qrels, run, definition="top-label")
    assert top.ece == pytest.approx(0.0, abs=1e-12)
    assert top.num_samples == 2


def test_bin_edges_are_upper_closed_and_zero_goes_first():
    assert list(bin_edges(4)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # an edge belongs to the bin it closes; 0 to the first bin; 1 to the last
    assert list(assign_bins([0.0, 1e-300, 0.1, 0.1000001, 0.3, 0.30000000000000004, 0.5, 1.0])) == [
        0,
        0,
        0,
        1,
        2,
        3,
        4,
        9,
    ]
    assert list(assign_bins([0.0, 0.25, 0.26, 1.0], num_bins=4)) == [0, 0, 1, 3]
    assert list(assign_bins([0.7], num_bins=1)) == [0]
    with pytest.raises(ConfigError):
        assign_bins([1.5])


def test_ece_from_samples_by_hand():
    # bin (0.2, 0.3]: 0.25 (hit), 0.3 (miss) -> acc 0.5, conf 0.275; bin (0.8, 0.9]: 0.9 (hit) -> 0.1
    ece, counts, accuracy, confidence = ece_from_samples([0.25, 0.3, 0.9], [True, False, True])
    assert counts == [0, 0, 2, 0, 0, 0, 0, 0, 1, 0]
    assert accuracy[2] == 0.5 and confidence[2] == pytest.approx(0.275)
    assert ece == pytest.approx(2 / 3 * 0.225 + 1 / 3 * 0.1)
    with pytest.raises(ConfigError):
        ece_from_samples([], [])
    with pytest.raises(ConfigError):
        ece_from_samples([0.5], [True, False])


def test_temperature():
    qrels, run = _three_queries()
    base = calibration(qrels, run, definition="top-label")
    hot = calibration(qrels, run, definition="top-label", temperature=2.0)
    # softmax(s / 2): C's top probability is sqrt(12) / (sqrt(12) + 4), in bin (0.4, 0.5]
    assert hot.counts[4] == 1 and hot.confidence[4] == pytest.approx(math.sqrt(12) / (math.sqrt(12) + 4))
    assert hot.ece != pytest.approx(base.ece)
    # the same as temperature 1 on scores divided by 2
    halved = {qid: {d: s / 2 for d, s in hits.items()} for qid, hits in run.items()}
    same = calibration(qrels, halved, definition="top-label")
    assert same.ece == pytest.approx(hot.ece) and same.counts == hot.counts
    # a cold softmax makes the clear winners (B, C) certain; A's five ties stay at 0.2
    cold = calibration(qrels, run, definition="top-label", temperature=0.01)
    assert cold.counts == [0, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert cold.temperature == 0.01
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature"):
            calibration(qrels, run, temperature=bad)


def test_calibration_query_selection():
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1}}
    run = {
        "q1": {"q1": 99.0, **{f"d{i}": float(-i) for i in range(1, 6)}},  # the query's own id ranks first
        "q2": {"d1": 1.0, "d2": 0.5},  # fewer than 5 documents: skipped
    }
    result = calibration(qrels, run, definition="top-label")
    assert result.num_queries == 1 and result.num_skipped == 1
    assert result.accuracy[result.counts.index(1)] == 1.0  # d1 is the top once q1 itself is dropped
    kept = calibration(qrels, run, definition="top-label", ignore_identical_ids=False)
    assert kept.accuracy[kept.counts.index(1)] == 0.0
    assert calibration(qrels, run, top_k=2).num_queries == 2
    with pytest.raises(DatasetError, match="run 'm': no judged query"):
        calibration({"other": {"d1": 1}}, run, name="m")
    with pytest.raises(ConfigError):
        calibration(qrels, run, definition="top-5")
    with pytest.raises(ConfigError):
        calibration(qrels, run, num_bins=0)


def test_calibration_table():
    qrels, run = _three_queries()
    table = format_calibration_table(
        {"pt2": calibration(qrels, run), "ft": calibration(qrels, run, num_bins=5)}
    )
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["model", "ECE"]
    assert lines[1].split()[0] == "pt2" and float(lines[1].split()[1]) == pytest.approx(17 / 90, abs=1e-4)
    assert len(lines) == 3


# ------------------------------------------------------------------------------------- query length
def test_bucket_edges_equal_sizes():
    lengths = list(range(1, 11))
    edges = bucket_edges(lengths, 5)
    assert edges == [1, 2, 4, 6, 8, 10]
    buckets = [assign_bucket(length, edges) for length in lengths]
    assert buckets == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_bucket_edges_with_ties():
    # six queries of length 1: the 1/5, 2/5 and 3/5 quantiles are all 1, so they merge into one bucket
    lengths = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5]
    edges = bucket_edges(lengths, 5)
    assert edges == [1, 1, 3, 5]
    buckets = [assign_bucket(length, edges) for length in lengths]
    assert buckets == [0] * 6 + [1, 1, 2, 2]
    # equal lengths never straddle a bucket boundary
    lengths = [2, 3, 3, 3, 4, 7]
    edges = bucket_edges(lengths, 3)
    assert edges == [2, 3, 7]  # the 1/3 and 2/3 quantiles are both 3
    assert [assign_bucket(length, edges) for length in lengths] == [0, 0, 0, 0, 1, 1]
    # one distinct length: one bucket; fewer queries than buckets: fewer buckets
    assert bucket_edges([4, 4, 4], 5) == [4, 4]
    assert bucket_edges([1, 2], 5) == [1, 1, 2]
    assert bucket_edges([5, 1, 3], 1) == [1, 5]
    with pytest.raises(ConfigError):
        bucket_edges([], 5)
    with pytest.raises(ConfigError):
        bucket_edges([1], 0)


def test_query_length_analysis_by_hand():
    queries = {
        "q1": "one",
        "q2": "two words",
        "q3": "now three words",
        "q4": " four  words\tin all ",
        "q5": "x",
    }
    assert [query_length(text) for text in queries.values()] == [1, 2, 3, 4, 1]
    qrels = {qid: {f"{qid}-rel": 1} for qid in ("q1", "q2", "q3", "q4")}  # q5 is not judged
    perfect = {qid: {f"{qid}-rel": 2.0, f"{qid}-other": 1.0} for qid in qrels}
    short_only = {
        "q1": {"q1-rel": 1.0},
        "q2": {"q2-rel": 1.0},
        "q3": {"q3-other": 1.0},
        # q4 missing from the run: scores 0
    }
    result = query_length_analysis(queries, qrels, {"good": perfect, "short": short_only}, num_buckets=2)
    assert [(b.min_length, b.max_length, b.num_queries) for b in result.buckets] == [(1, 2, 2), (3, 4, 2)]
    assert [b.ndcg["good"] for b in result.buckets] == [1.0, 1.0]
    assert [b.ndcg["short"] for b in result.buckets] == [1.0, 0.0]
    assert result.overall == {"good": 1.0, "short": 0.5}
    assert result.missing == {"good": 0, "short": 1}
    assert result.num_queries == 4 and result.requested_buckets == 2
    table = result.to_markdown().splitlines()
    assert table[0].startswith("| bucket | query length | queries | good nDCG@10 | short nDCG@10")
    assert table[2] == "| 1 | 1-2 | 2 | 1.0000 | 1.0000 |"
    assert table[-1] == "| all | 1-4 | 4 | 1.0000 | 0.5000 |"
    data = result.to_json()
    assert data["buckets"][1]["label"] == "3-4"
    json.dumps(data)
    with pytest.raises(DatasetError, match="run 'none'"):
        query_length_analysis(queries, qrels, {"none": {"zzz": {"d": 1.0}}})


# ------------------------------------------------------------------------------------- TREC runs
def test_run_file_round_trip(tmp_path):
    run = {"q1": {"d1": 0.5, "d2": 1.25, "d3": -3.0000000000000004}, "q2": {"d9": 1e-12}}
    path = tmp_path / "run.trec"
    write_run_file(run, path, run_name="model")
    assert read_run_file(path) == run


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ("q1 Q0 d1 1 0.5 m\nq1 Q0 d2 2 0.4\n", "line 2: expected 6 columns"),
        ("q1 Q0 d1 1 0.5 m\n\nq1 Q0 d2 x 0.4 m\n", "line 3: rank 'x' is not an integer"),
        ("q1 Q0 d1 1 high m\n", "line 1: score 'high' is not a number"),
        ("q1 Q0 d1 1 nan m\n", "line 1: score 'nan' is not a finite number"),
        (
            "q1 Q0 d1 1 0.5 m\nq1 Q0 d1 2 0.4 m\n",
            "line 2: document 'd1' listed twice for query 'q1' (first on line 1)",
        ),
        ("\n\n", "holds no run lines"),
    ],
)
def test_malformed_run_files(tmp_path, lines, needle):
    path = tmp_path / "bad.trec"
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        read_run_file(path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_missing_and_binary_run_files(tmp_path):
    with pytest.raises(DatasetError, match="missing run file"):
        read_run_file(tmp_path / "nope.trec")
    path = tmp_path / "binary.trec"
    path.write_bytes(b"q1 Q0 d1 1 0.5 \xff\xfe\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_run_file(path)


# ------------------------------------------------------------------------------------- plots
def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers


def test_reliability_diagram(tmp_path):
    pytest.importorskip("matplotlib")
    qrels, run = _three_queries()
    results = {"pt2": calibration(qrels, run), "ft": calibration(qrels, run, temperature=0.5)}
    plot_reliability(results, tmp_path / "side.png")
    _assert_png(tmp_path / "side.png")
    plot_reliability(results, tmp_path / "plots" / "overlay.png", layout="overlay", title="demo")
    _assert_png(tmp_path / "plots" / "overlay.png")
    with pytest.raises(ConfigError, match="same bins"):
        plot_reliability({"a": results["pt2"], "b": calibration(qrels, run, num_bins=5)}, tmp_path / "x.png")


def test_query_length_plot(tmp_path):
    pytest.importorskip("matplotlib")
    queries = {f"q{i}": " ".join(["w"] * i) for i in range(1, 11)}
    qrels = {qid: {"d1": 1} for qid in queries}
    run = {qid: {"d1": 1.0 if i % 2 else 0.0, "d2": 0.5} for i, qid in enumerate(queries)}
    result = query_length_analysis(queries, qrels, {"a": run, "b": {qid: {"d1": 1.0} for qid in queries}})
    plot_query_length(result, tmp_path / "length.png", title="demo")
    _assert_png(tmp_path / "length.png")


def test_plots_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    qrels, run = _three_queries()
    with pytest.raises(ConfigError, match=re.escape('pip install "beir-peft[plots]"')):
        plot_reliability({"m": calibration(qrels, run)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------- CLI
_ERROR_LINE = re.compile(r"^(error|Error): ", re.MULTILINE)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(status: int, out: str, err: str) -> str:
    assert status == 2, (out, err)
    assert "Traceback" not in err + out
    assert len(_ERROR_LINE.findall(err)) == 1, err
    return next(line for line in err.splitlines() if _ERROR_LINE.match(line))


def rows_of(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


@pytest.fixture
def demo_runs(tmp_path):
    """Two TREC runs on the demo test split from word overlap (no model): plain and length-normalised."""
    from beir_peft.data import load_dataset

    data = load_dataset("demo", split="test")

    def words(text: str) -> set[str]:
        return {word.strip("?.,!'\"").lower() for word in text.split()} - {""}

    docs = {doc_id: words(f"{doc['title']} {doc['text']}") for doc_id, doc in data.corpus.items()}
    overlap, normalised = {}, {}
    for qid, text in data.queries.items():
        query = words(text)
        overlap[qid] = {doc_id: float(len(query & doc)) for doc_id, doc in docs.items()}
        normalised[qid] = {doc_id: len(query & doc) / math.sqrt(len(doc) + 1) for doc_id, doc in docs.items()}
    paths = {"overlap": tmp_path / "overlap.trec", "norm": tmp_path / "norm.trec"}
    write_run_file(overlap, paths["overlap"], run_name="overlap")
    write_run_file(normalised, paths["norm"], run_name="norm")
    return data, paths


@pytest.mark.usefixtures("no_network_data")
def test_cli_calibration(demo_runs, tmp_path, capsys):
    data, paths = demo_runs
    output, plot = tmp_path / "ece.json", tmp_path / "ece.png"
    argv = [
        "analyze",
        "calibration",
        "--run",
        f"overlap={paths['overlap']}",
        "--run",
        f"norm={paths['norm']}",
    ]
    status, out, err = run_cli(capsys, *argv, "--output", str(output))
    assert status == 0, err
    rows = rows_of(out)
    assert set(rows) == {"overlap", "norm"}
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["analysis"] == "calibration" and result["dataset"] == "demo" and result["split"] == "test"
    assert result["settings"] == {
        "bins": 10,
        "definition": "pooled",
        "temperature": 1.0,
        "top_k": 5,
        "ignore_identical_ids": True,
    }
    for name in ("overlap", "norm"):
        entry = result["results"][name]
        assert float(rows[name][1]) == pytest.approx(entry["ece"], abs=1e-4)
        assert entry["num_queries"] == len(data.queries) and entry["num_samples"] == 5 * len(data.queries)
        assert sum(entry["counts"]) == entry["num_samples"]
    # the same numbers as the library on the same files
    expected = calibration(data.qrels, read_run_file(paths["norm"]))
    assert result["results"]["norm"]["ece"] == pytest.approx(expected.ece)
    # the other definition, a temperature, fewer bins (and a plot when matplotlib is there)
    extra = ["--plot", str(plot)] if importlib.util.find_spec("matplotlib") else []
    status, out, err = run_cli(
        capsys, *argv, "--definition", "top-label", "--temperature", "0.5", "--bins", "5", *extra
    )
    assert status == 0, err
    expected = calibration(
        data.qrels, read_run_file(paths["overlap"]), definition="top-label", temperature=0.5, num_bins=5
    )
    assert float(rows_of(out)["overlap"][1]) == pytest.approx(expected.ece, abs=1e-4)
    if extra:
        _assert_png(plot)


@pytest.mark.usefixtures("no_network_data")
def test_cli_query_length(demo_runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data, paths = demo_runs
    output, plot = tmp_path / "length.json", tmp_path / "length.png"
    status, out, err = run_cli(
        capsys,
        "analyze",
        "query-length",
        "--dataset",
        "demo",
        "--run",
        f"overlap={paths['overlap']}",
        "--run",
        str(paths["norm"]),  # a bare file is named by its stem
        "--buckets",
        "4",
        "--plot",
        str(plot),
        "--output",
        str(output),
    )
    assert status == 0, err
    assert out.startswith("| bucket | query length | queries | overlap nDCG@10 | norm nDCG@10 |")
    result = json.loads(output.read_text(encoding="utf-8"))["result"]
    assert sum(bucket["num_queries"] for bucket in result["buckets"]) == len(data.queries)
    assert 1 <= len(result["buckets"]) <= 4
    _assert_png(plot)


@pytest.mark.usefixtures("no_network_data")
def test_cli_bad_inputs(demo_runs, tmp_path, capsys):
    _, paths = demo_runs
    bad = tmp_path / "bad.trec"
    bad.write_text("q01 Q0 d01 1 0.5 x\nq01 Q0 d02 2\n", encoding="utf-8")
    for command in ("calibration", "query-length"):
        line = one_error_line(*run_cli(capsys, "analyze", command, "--run", f"m={bad}"))
        assert str(bad) in line and "line 2" in line
    line = one_error_line(*run_cli(capsys, "analyze", "calibration", "--run", f"m={tmp_path / 'none.trec'}"))
    assert "missing run file" in line
    # a run of another dataset: no judged query
    other = tmp_path / "other.trec"
    write_run_file({"zz": {f"d{i}": float(i) for i in range(6)}}, other)
    line = one_error_line(*run_cli(capsys, "analyze", "calibration", "--run", f"other={other}"))
    assert "run 'other'" in line and "no judged query" in line
    one_error_line(
        *run_cli(
            capsys, "analyze", "calibration", "--run", f"a={paths['norm']}", "--run", f"a={paths['overlap']}"
        )
    )
    one_error_line(
        *run_cli(capsys, "analyze", "calibration", "--run", f"a={paths['norm']}", "--temperature", "0")
    )
    one_error_line(
        *run_cli(capsys, "analyze", "calibration", "--run", f"a={paths['norm']}", "--split", "dev")
    )
    one_error_line(*run_cli(capsys, "analyze", "calibration"))  # --run is required


@pytest.mark.usefixtures("no_network_data")
def test_cli_plot_without_matplotlib(demo_runs, tmp_path, capsys, monkeypatch):
    _, paths = demo_runs
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    output = tmp_path / "ece.json"
    argv = ["analyze", "calibration", "--run", f"a={paths['norm']}", "--plot", str(tmp_path / "x.png")]
    line = one_error_line(*run_cli(capsys, *argv, "--output", str(output)))
    assert "matplotlib" in line and "beir-peft[plots]" in line
    assert not output.exists()  # refused before any work
