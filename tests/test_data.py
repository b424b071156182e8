"""The dataset layer: finding, downloading (locally served only), loading and validating BEIR folders."""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from beir_peft import data as data_module
from beir_peft.data import (
    DEMO_DATASET,
    BeirDataset,
    available_splits,
    demo_dataset_path,
    load_corpus,
    load_dataset,
    load_qrels,
    load_queries,
    resolve_dataset,
)
from beir_peft.errors import BeirPeftError, DatasetError

pytestmark = pytest.mark.usefixtures("no_network_data")

CORPUS = [
    {"_id": "d1", "title": "Bees", "text": "Honeybees dance to share where flowers are."},
    {"_id": "d2", "title": "Tea", "text": "Black tea has less caffeine than coffee."},
    {"_id": "d3", "title": "Glass", "text": "Glass can be recycled many times."},
    {"_id": "d4", "title": "Salt", "text": "Salt barely changes the boiling point of water."},
]
QUERIES = [
    {"_id": "q1", "text": "how do bees tell others about flowers"},
    {"_id": "q2", "text": "does tea have more caffeine than coffee"},
    {"_id": "q3", "text": "can glass be recycled"},
]
QRELS = {"test": [("q1", "d1", 1), ("q2", "d2", 1), ("q2", "d4", 0)], "train": [("q3", "d3", 1)]}


def jsonl(records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def qrels_tsv(rows, header: bool = True) -> str:
    lines = ["query-id\tcorpus-id\tscore"] if header else []
    lines += [f"{q}\t{d}\t{s}" for q, d, s in rows]
    return "\n".join(lines) + "\n"


def make_dataset(
    root: Path,
    corpus: str | list | None = None,
    queries: str | list | None = None,
    qrels: dict[str, str | list] | None = None,
) -> Path:
    """A BEIR folder at ``root``; each part is records (list) or raw file text (str)."""
    corpus = CORPUS if corpus is None else corpus
    queries = QUERIES if queries is None else queries
    qrels = QRELS if qrels is None else qrels
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus if isinstance(corpus, str) else jsonl(corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text(
        queries if isinstance(queries, str) else jsonl(queries), encoding="utf-8"
    )
    for split, rows in qrels.items():
        text = rows if isinstance(rows, str) else qrels_tsv(rows)
        (root / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")
    return root


def load_error(folder: Path, split: str = "test", **kwargs) -> str:
    """The message of the DatasetError that loading ``folder`` raises; checks it is one line."""
    with pytest.raises(DatasetError) as info:
        load_dataset(folder, split=split, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, BeirPeftError)
    return message


# ----------------------------------------------------------------------------------- valid folders
def test_valid_folder_loads_judged_queries_in_file_order(tmp_path):
    folder = make_dataset(tmp_path / "mini")
    data = load_dataset(folder, split="test")
    assert isinstance(data, BeirDataset)
    assert (data.name, data.path, data.split) == ("mini", folder, "test")
    assert data.corpus["d1"] == {"title": "Bees", "text": "Honeybees dance to share where flowers are."}
    assert len(data.corpus) == 4
    assert list(data.queries) == ["q1", "q2"]  # q3 is judged only in train
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1, "d4": 0}}
    assert data.num_judgements == 3
    assert data.describe() == "mini/test: 4 docs, 2 queries, 3 judgements"
    assert data.train_pairs() == [("q1", "d1"), ("q2", "d2")]  # the score-0 row is not a positive


def test_qrels_header_is_optional_and_spaces_separate_columns(tmp_path):
    folder = make_dataset(tmp_path / "mini", qrels={"test": "q1 d1 1\nq2   d2 2\n"})
    assert load_dataset(folder).qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert load_qrels(folder / "qrels" / "test.tsv") == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_numeric_ids_are_strings(tmp_path):
    corpus = [{"_id": 1, "title": "", "text": "one"}, {"_id": 2, "text": "two"}]
    queries = [{"_id": 7, "text": "seven"}]
    folder = make_dataset(tmp_path / "num", corpus=corpus, queries=queries, qrels={"test": [("7", "2", 1)]})
    data = load_dataset(folder)
    assert set(data.corpus) == {"1", "2"}
    assert data.queries == {"7": "seven"}
    assert data.qrels == {"7": {"2": 1}}


def test_missing_and_null_titles_load_as_empty(tmp_path):
    corpus = [
        {"_id": "d1", "title": None, "text": "null title"},
        {"_id": "d2", "text": "no title key"},
        {"_id": "d3", "title": "T", "text": "titled"},
    ]
    folder = make_dataset(tmp_path / "t", corpus=corpus, qrels={"test": [("q1", "d1", 1)]})
    corpus_loaded = load_dataset(folder).corpus
    assert corpus_loaded["d1"] == {"title": "", "text": "null title"}
    assert corpus_loaded["d2"] == {"title": "", "text": "no title key"}
    assert corpus_loaded["d3"]["title"] == "T"
    assert load_corpus(folder) == corpus_loaded  # a folder or the file itself


def test_single_query_split(tmp_path):
    folder = make_dataset(tmp_path / "one")
    data = load_dataset(folder, split="train")
    assert data.queries == {"q3": "can glass be recycled"}
    assert data.qrels == {"q3": {"d3": 1}}
    assert data.train_pairs() == [("q3", "d3")]
    assert data.describe() == "one/train: 4 docs, 1 queries, 1 judgements"


def test_available_splits(tmp_path):
    folder = make_dataset(tmp_path / "s", qrels={"test": QRELS["test"], "dev": QRELS["train"]})
    assert available_splits(folder) == ["dev", "test"]
    assert available_splits(tmp_path / "nowhere") == []
    assert available_splits(demo_dataset_path()) == ["test", "train"]


# ----------------------------------------------------------------------------------- bad files
def test_malformed_json_line_names_file_and_line(tmp_path):
    lines = jsonl(CORPUS).splitlines()
    lines[2] = '{"_id": "d3", "text": "unterminated'
    folder = make_dataset(tmp_path / "bad", corpus="\n".join(lines) + "\n")
    message = load_error(folder)
    assert str(folder / "corpus.jsonl") in message
    assert "line 3" in message
    assert "invalid JSON" in message


def test_malformed_json_in_queries_names_file_and_line(tmp_path):
    folder = make_dataset(tmp_path / "bad", queries=jsonl(QUERIES) + "[1, 2]\n")
    message = load_error(folder)
    assert str(folder / "queries.jsonl") in message
    assert "line 4" in message


def test_missing_id(tmp_path):
    corpus = [CORPUS[0], {"title": "x", "text": "no id here"}, *CORPUS[1:]]
    folder = make_dataset(tmp_path / "bad", corpus=corpus)
    message = load_error(folder)
    assert str(folder / "corpus.jsonl") in message
    assert "line 2" in message
    assert "missing '_id'" in message


def test_missing_text(tmp_path):
    queries = [QUERIES[0], {"_id": "q2"}, QUERIES[2]]
    folder = make_dataset(tmp_path / "bad", queries=queries)
    message = load_error(folder)
    assert str(folder / "queries.jsonl") in message
    assert "line 2" in message
    assert "missing 'text'" in message


def test_missing_corpus_text(tmp_path):
    corpus = [*CORPUS, {"_id": "d5", "title": "only a title"}]
    folder = make_dataset(tmp_path / "bad", corpus=corpus)
    message = load_error(folder)
    assert "corpus.jsonl line 5" in message
    assert "'text'" in message


def test_duplicate_doc_id(tmp_path):
    corpus = [*CORPUS, {"_id": "d2", "title": "again", "text": "a second d2"}]
    folder = make_dataset(tmp_path / "dup", corpus=corpus)
    message = load_error(folder)
    assert str(folder / "corpus.jsonl") in message
    assert "line 5" in message
    assert "duplicate _id 'd2'" in message
    assert "first seen on line 2" in message


def test_duplicate_query_id(tmp_path):
    queries = [*QUERIES, {"_id": "q1", "text": "again"}]
    folder = make_dataset(tmp_path / "dup", queries=queries)
    message = load_error(folder)
    assert str(folder / "queries.jsonl") in message
    assert "line 4" in message
    assert "duplicate _id 'q1'" in message
    assert "first seen on line 1" in message


def test_qrels_naming_unknown_query(tmp_path):
    folder = make_dataset(tmp_path / "bad", qrels={"test": [("q1", "d1", 1), ("q9", "d2", 1)]})
    message = load_error(folder)
    assert str(folder / "qrels" / "test.tsv") in message
    assert "line 3" in message  # after the header
    assert "'q9'" in message
    assert "queries.jsonl" in message


def test_qrels_naming_unknown_documents(tmp_path):
    folder = make_dataset(
        tmp_path / "bad", qrels={"test": [("q1", "d1", 1), ("q2", "d77", 1), ("q2", "d78", 1)]}
    )
    message = load_error(folder)
    assert str(folder / "qrels" / "test.tsv") in message
    assert "line 3" in message
    assert "'d77'" in message
    assert "corpus.jsonl" in message
    assert "2 of 3 rows" in message


def test_a_few_unknown_documents_are_tolerated_unless_strict(tmp_path, caplog):
    # 1 row in 200 (0.5%) names a missing passage, as ArguAna's test qrels do
    corpus = [{"_id": f"d{i}", "text": f"passage {i}"} for i in range(200)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(200)]
    rows = [(f"q{i}", f"d{i}", 1) for i in range(199)] + [("q199", "missing-doc", 1)]
    folder = make_dataset(tmp_path / "few", corpus=corpus, queries=queries, qrels={"test": rows})
    with caplog.at_level(logging.WARNING, logger="beir_peft.data"):
        data = load_dataset(folder)
    assert "missing-doc" in caplog.text
    assert data.qrels["q199"] == {"missing-doc": 1}  # counted as unretrievable, as BEIR does
    assert len(data.queries) == 200
    assert ("q199", "missing-doc") not in data.train_pairs()
    assert len(data.train_pairs()) == 199
    assert "'missing-doc'" in load_error(folder, strict=True)


def test_empty_corpus(tmp_path):
    folder = make_dataset(tmp_path / "empty", corpus="\n\n")
    message = load_error(folder)
    assert str(folder / "corpus.jsonl") in message
    assert "no documents" in message


def test_empty_query_set(tmp_path):
    folder = make_dataset(tmp_path / "empty", queries="")
    message = load_error(folder)
    assert str(folder / "queries.jsonl") in message
    assert "no queries" in message


def test_split_with_no_judged_queries(tmp_path):
    folder = make_dataset(tmp_path / "empty", qrels={"test": "query-id\tcorpus-id\tscore\n"})
    message = load_error(folder)
    assert str(folder / "qrels" / "test.tsv") in message
    assert "no judgements" in message


def test_missing_qrels_split_lists_available_splits(tmp_path):
    folder = make_dataset(tmp_path / "s", qrels={"test": QRELS["test"], "train": QRELS["train"]})
    message = load_error(folder, split="dev")
    assert "unknown split 'dev'" in message
    assert str(folder / "qrels" / "dev.tsv") in message
    assert "available splits: test, train" in message


def test_bad_qrels_rows(tmp_path):
    folder = make_dataset(tmp_path / "cols", qrels={"test": "q1\td1\t1\nq2\td2\n"})
    assert "line 2: expected 3 columns" in load_error(folder)
    folder = make_dataset(tmp_path / "score", qrels={"test": "q1\td1\t1\nq2\td2\thigh\n"})
    assert "line 2: score 'high' is not an integer" in load_error(folder)


def test_headerless_qrels_with_a_non_integer_first_score_is_an_error(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text("q1\td1\t0.5\nq2\td2\t1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"qrels.tsv line 1: score '0.5' is not an integer") as info:
        load_qrels(path)
    assert "\n" not in str(info.value)


def test_headerless_qrels_keep_their_first_row(tmp_path):
    rows = "".join(f"q{i}\td{i}\t1\n" for i in range(1, 11))
    folder = make_dataset(tmp_path / "mini", qrels={"test": rows}, queries=[{"_id": f"q{i}", "text": f"query {i}"}
                          for i in range(1, 11)], corpus=[{"_id": f"d{i}", "text": f"doc {i}"} for i in range(1, 11)])  # fmt: skip
    data = load_dataset(folder)
    assert len(data.queries) == 10 and data.num_judgements == 10


@pytest.mark.parametrize(
    "header",
    [
        "query-id\tcorpus-id\tscore",
        "qid\tpid\tlabel",
        "query_id doc_id relevance",
        "QID DOCID REL",
        "topic docno grade",
    ],
)
def test_qrels_header_is_told_by_its_content(tmp_path, header):
    path = tmp_path / "qrels.tsv"
    path.write_text(f"{header}\nq1\td1\t1\n", encoding="utf-8")
    assert load_qrels(path) == {"q1": {"d1": 1}}


def test_a_row_that_only_looks_wrong_is_not_taken_for_a_header(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text("q1\td1\thigh\nq2\td2\t1\n", encoding="utf-8")
    with pytest.raises(
        DatasetError, match="line 1: score 'high' is not an integer .*header line names its columns"
    ):
        load_qrels(path)


@pytest.mark.parametrize("bad_id", ["d 1", "d\t1", "d1 "])
def test_ids_with_whitespace_are_refused_at_load(tmp_path, bad_id):
    corpus = [{"_id": "d0", "text": "fine"}, {"_id": bad_id, "text": "spaced"}]
    folder = make_dataset(tmp_path / "c", corpus=corpus, qrels={"test": [("q1", "d0", 1)]})
    with pytest.raises(DatasetError, match=r"corpus.jsonl line 2: '_id' .* contains whitespace"):
        load_dataset(folder)
    queries = [{"_id": "q1", "text": "fine"}, {"_id": bad_id, "text": "spaced"}]
    folder = make_dataset(tmp_path / "q", queries=queries, qrels={"test": [("q1", "d1", 1)]})
    with pytest.raises(DatasetError, match=r"queries.jsonl line 2: '_id' .* contains whitespace"):
        load_queries(folder)


def test_unterminated_json_string_message_reads_well(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "d1", "text": "broken', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_corpus(path)
    message = str(info.value)
    assert "line 1: invalid JSON (Unterminated string starting at column" in message
    assert "at at" not in message


def test_missing_files(tmp_path):
    folder = make_dataset(tmp_path / "noq")
    (folder / "queries.jsonl").unlink()
    assert load_error(folder) == f"missing file {folder / 'queries.jsonl'}"
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="missing file"):
        load_queries(tmp_path / "nowhere.jsonl")


def test_byte_order_mark_is_ignored(tmp_path):
    folder = make_dataset(tmp_path / "bom")
    for name in ("corpus.jsonl", "queries.jsonl"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_bytes(b"\xef\xbb\xbf" + qrels.read_bytes())
    data = load_dataset(folder)
    assert "d1" in data.corpus and "q1" in data.queries and data.num_judgements == 3


def test_folder_of_sub_datasets_says_to_load_one(tmp_path):
    make_dataset(tmp_path / "cqa" / "android")
    make_dataset(tmp_path / "cqa" / "gis")
    message = load_error(tmp_path / "cqa")
    assert "several datasets (android, gis)" in message
    assert str(tmp_path / "cqa" / "android") in message
    assert load_dataset(tmp_path / "cqa" / "gis").name == "gis"


# ----------------------------------------------------------------------------------- the demo dataset
def test_demo_dataset_by_default_and_by_name():
    default = load_dataset()
    by_name = load_dataset(DEMO_DATASET, split="test")
    assert default.name == by_name.name == "demo"
    assert default.path == by_name.path == demo_dataset_path()
    assert default.describe() == "demo/test: 53 docs, 20 queries, 22 judgements"
    assert default.corpus == by_name.corpus and default.qrels == by_name.qrels
    assert list(default.queries) == [f"q{i:02d}" for i in range(1, 21)]
    # null titles (d31, d48) and a missing title key (d44) are empty strings
    for doc_id in ("d31", "d44", "d48"):
        assert default.corpus[doc_id]["title"] == ""
        assert default.corpus[doc_id]["text"]
    assert resolve_dataset(None) == resolve_dataset("demo") == demo_dataset_path()


def test_demo_train_pairs():
    train = load_dataset("demo", split="train")
    assert train.describe() == "demo/train: 53 docs, 10 queries, 11 judgements"
    pairs = train.train_pairs()
    rows = (demo_dataset_path() / "qrels" / "train.tsv").read_text(encoding="utf-8").split("\n")[1:]
    expected = [tuple(row.split("\t")[:2]) for row in rows if row.strip()]
    assert sorted(pairs) == sorted(expected)
    assert len(pairs) == 11
    assert {q for q, _ in pairs} == set(train.queries) == {f"q{i}" for i in range(21, 31)}
    assert all(doc in train.corpus for _, doc in pairs)
    # grouped by query in order of first appearance
    seen = [q for q, _ in pairs]
    assert seen == sorted(seen, key=seen.index)
    test_queries = set(load_dataset().queries)
    assert not test_queries & set(train.queries)  # q31 and q32 are in neither split


def test_demo_matches_beirs_own_loader():
    beir_loader = pytest.importorskip("beir.datasets.data_loader")
    corpus, queries, qrels = beir_loader.GenericDataLoader(str(demo_dataset_path())).load("test")
    data = load_dataset()
    assert data.queries == queries
    assert data.qrels == qrels
    assert set(data.corpus) == set(corpus)
    for doc_id, doc in corpus.items():
        assert data.corpus[doc_id] == {"title": doc.get("title") or "", "text": doc["text"]}


# ----------------------------------------------------------------------------------- resolution
def test_data_dir_comes_before_cache(tmp_path, monkeypatch, no_network_data):
    cached = make_dataset(no_network_data / "datasets" / "mini", qrels={"test": QRELS["test"]})
    data_dir = tmp_path / "data"
    local = make_dataset(data_dir / "mini", corpus=CORPUS[:3], qrels={"test": [("q1", "d1", 1)]})
    assert load_dataset("mini").path == cached  # only the cache so far
    monkeypatch.setenv("BEIR_PEFT_DATA", str(data_dir))
    data = load_dataset("mini")
    assert data.path == local
    assert len(data.corpus) == 3
    assert resolve_dataset("mini") == local


def test_data_dirs_are_searched_in_order(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    make_dataset(second / "mini")
    monkeypatch.setenv("BEIR_PEFT_DATA", os.pathsep.join([str(first), str(second)]))
    assert resolve_dataset("mini") == second / "mini"
    make_dataset(first / "mini")
    assert resolve_dataset("mini") == first / "mini"


def test_public_name_found_in_cache_needs_no_download(no_network_data):
    folder = make_dataset(no_network_data / "datasets" / "scifact")
    assert load_dataset("scifact").path == folder


def test_stray_folder_in_cwd_does_not_hide_a_name(tmp_path, monkeypatch, no_network_data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mini").mkdir()  # no corpus.jsonl: not a dataset
    cached = make_dataset(no_network_data / "datasets" / "mini")
    assert resolve_dataset("mini") == cached
    other = make_dataset(tmp_path / "other")
    assert resolve_dataset("other") == Path("other")
    assert load_dataset("other").path.resolve() == other


def test_unknown_name_is_an_error_without_download(monkeypatch, no_network_data):
    monkeypatch.delenv("BEIR_PEFT_DATASET_URL")
    with pytest.raises(DatasetError) as info:
        load_dataset("nosuchdataset")
    message = str(info.value)
    assert "unknown dataset 'nosuchdataset'" in message
    assert str(no_network_data / "datasets" / "nosuchdataset") in message
    assert "scifact" in message and "'demo'" in message
    assert "--dataset /path/to/nosuchdataset" in message


@pytest.mark.parametrize("name", ["../etc", "a b", "  "])
def test_invalid_names(name):
    with pytest.raises(DatasetError):
        resolve_dataset(name)


def test_download_off_names_places_looked(no_network_data):
    with pytest.raises(DatasetError, match="downloading is off") as info:
        resolve_dataset("scifact", download=False)
    assert str(no_network_data / "datasets" / "scifact") in str(info.value)


def test_unreachable_download_for_a_beir_name(no_network_data):
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        load_dataset("scifact")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message
    assert "$BEIR_PEFT_DATA/scifact" in message  # the places looked ...
    assert str(no_network_data / "datasets" / "scifact") in message
    assert "http://127.0.0.1:9/scifact.zip" in message  # ... the download tried ...
    assert "--dataset /path/to/scifact" in message  # ... and how to point at a local copy
    assert "BEIR_PEFT_DATA=" in message
    assert elapsed < 10, f"a refused download took {elapsed:.1f} s"
    # nothing half-written is left in the cache
    assert list((no_network_data / "datasets").iterdir()) == []


def test_download_that_never_answers_times_out(monkeypatch, no_network_data):
    """A server that accepts the connection but never replies must not hang the loader."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    monkeypatch.setenv("BEIR_PEFT_DATASET_URL", f"http://127.0.0.1:{port}/{{name}}.zip")
    monkeypatch.setattr(data_module, "_TIMEOUT_S", (1, 1))
    # Closing the listener resets the pending connection: without a timeout the test fails, not hangs.
    guard = threading.Timer(30, server.close)
    guard.start()
    started = time.monotonic()
    try:
        with pytest.raises(DatasetError, match="download") as info:
            load_dataset("scifact")
    finally:
        guard.cancel()
        server.close()
    assert time.monotonic() - started < 15, "the download did not give up on a silent server"
    assert "scifact" in str(info.value)


def test_default_download_timeout_is_finite():
    connect, read = data_module._TIMEOUT_S
    assert 0 < connect <= 60 and 0 < read <= 300


class _ZipHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        if self.path != "/tiny.zip":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


def test_download_from_a_local_server_is_cached(tmp_path, monkeypatch, no_network_data):
    source = make_dataset(tmp_path / "src" / "tiny")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in source.rglob("*"):
            if path.is_file():
                zipped.write(path, path.relative_to(source.parent).as_posix())
    handler = type("Handler", (_ZipHandler,), {"payload": buffer.getvalue(), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("BEIR_PEFT_DATASET_URL", f"http://127.0.0.1:{server.server_port}/{{name}}.zip")
        data = load_dataset("tiny")
        with pytest.raises(DatasetError, match="404"):
            load_dataset("absent")
    finally:
        server.shutdown()
        server.server_close()
    target = no_network_data / "datasets" / "tiny"
    assert data.path == target
    assert data.describe() == "tiny/test: 4 docs, 2 queries, 3 judgements"
    assert handler.requests == ["/tiny.zip", "/absent.zip"]
    # the server is gone: a second load reads the cache
    assert load_dataset("tiny", split="train").path == target
    assert sorted(p.name for p in (no_network_data / "datasets").iterdir()) == ["tiny"]


# ----------------------------------------------------------------------------------- real datasets
@pytest.mark.integration
def test_scifact_counts(shared_datasets):
    folder = shared_datasets / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"{folder} is not available")
    test = load_dataset(folder, split="test")
    assert len(test.corpus) == 5183
    assert len(test.queries) == 300
    train = load_dataset(folder, split="train")
    assert len(train.corpus) == 5183
    assert len(train.queries) == 809
    assert train.num_judgements == 919
    assert len(train.train_pairs()) == 919
    assert not set(train.queries) & set(test.queries)


@pytest.mark.integration
def test_scifact_resolves_by_name_from_beir_peft_data(shared_datasets, monkeypatch):
    if not (shared_datasets / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"{shared_datasets / 'scifact'} is not available")
    monkeypatch.setenv("BEIR_PEFT_DATA", str(shared_datasets))
    assert resolve_dataset("scifact") == shared_datasets / "scifact"
