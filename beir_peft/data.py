"""BEIR-format retrieval datasets: find them, fetch them, load and validate them.

A dataset is a folder in BEIR's layout (what ``beir.datasets.data_loader.GenericDataLoader`` reads)::

    corpus.jsonl        one {"_id": str, "title": str, "text": str, ...} per line
    queries.jsonl       one {"_id": str, "text": str, ...} per line
    qrels/<split>.tsv   query-id <TAB> corpus-id <TAB> score, after an optional header line

Ids are one word (no whitespace): TREC run files, which evaluation writes and analysis reads,
separate their fields by whitespace, so such an id is refused when the file is read.

:func:`resolve_dataset` turns a name or a path into such a folder (bundled demo, a local folder,
``$BEIR_PEFT_DATA``, the cache, or BEIR's public download) and :func:`load_dataset` reads one split
of it into a :class:`BeirDataset`. Every problem with the user's files is a :class:`DatasetError`
whose one-line message names the file, and the line where one applies.

:func:`passage_text` is BEIR's rule for the one string a corpus entry is encoded as (its title,
a space, its text), shared by every model, searcher and training method.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beir_peft.errors import DatasetError

logger = logging.getLogger(__name__)

DEMO_DATASET = "demo"

#: Datasets downloadable from BEIR's public server (``DOWNLOAD_URL``). ``cqadupstack`` unpacks into
#: twelve sub-datasets (``cqadupstack/android``, ...), which load by path.
BEIR_DATASETS: tuple[str, ...] = (
    "msmarco",
    "trec-covid",
    "nfcorpus",
    "nq",
    "nq-train",
    "hotpotqa",
    "fiqa",
    "arguana",
    "webis-touche2020",
    "cqadupstack",
    "quora",
    "dbpedia-entity",
    "scidocs",
    "fever",
    "climate-fever",
    "scifact",
)

DOWNLOAD_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

ENV_DATA = "BEIR_PEFT_DATA"
ENV_CACHE = "BEIR_PEFT_CACHE"
ENV_URL = "BEIR_PEFT_DATASET_URL"

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"

#: Without ``strict``, qrels rows naming documents absent from the corpus are kept (with a warning)
#: when they are at most this fraction of the rows: public BEIR data has a few (ArguAna's test
#: qrels name one missing passage), and BEIR's evaluation counts them as unretrievable relevant
#: documents, which is how published scores were computed. More than that means mismatched files.
MAX_MISSING_DOC_FRACTION = 0.01

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = (15, 60)  # (connect, read) for requests


# --------------------------------------------------------------------------------------------------
# The loaded dataset


def passage_text(doc: Mapping[str, Any] | str) -> str:
    """Join a BEIR corpus entry into one string: ``title + " " + text`` as BEIR's SentenceBERT does.

    Missing or ``None`` titles (and texts) are treated as empty.
    """
    if isinstance(doc, str):
        return doc
    title = doc.get("title") or ""
    text = doc.get("text") or ""
    return f"{title} {text}".strip() if title else text


@dataclass
class BeirDataset:
    """One split of a BEIR dataset, held in memory.

    ``corpus``: doc_id -> {"title": str, "text": str}; ``queries``: query_id -> text, only the queries
    judged in this split, in ``queries.jsonl`` order; ``qrels``: query_id -> {doc_id: score}.
    """

    name: str
    path: Path
    split: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def num_judgements(self) -> int:
        """Number of (query, document) judgements in the split."""
        return sum(len(docs) for docs in self.qrels.values())

    def train_pairs(self, min_score: int = 1) -> list[tuple[str, str]]:
        """(query_id, doc_id) pairs judged ``>= min_score``, in qrels order.

        Qrels order is the file's order, grouped by query in order of first appearance. Pairs whose
        document is not in the corpus (tolerated on load, see ``MAX_MISSING_DOC_FRACTION``) are left
        out since they have no text to train on.
        """
        return [
            (query_id, doc_id)
            for query_id, docs in self.qrels.items()
            for doc_id, score in docs.items()
            if score >= min_score and doc_id in self.corpus
        ]

    def describe(self) -> str:
        """One-line summary, e.g. ``"scifact/test: 5183 docs, 300 queries, 339 judgements"``."""
        return (
            f"{self.name}/{self.split}: {len(self.corpus)} docs, {len(self.queries)} queries, "
            f"{self.num_judgements} judgements"
        )

    def __str__(self) -> str:
        return self.describe()


# --------------------------------------------------------------------------------------------------
# Finding a dataset folder


def demo_dataset_path() -> Path:
    """Folder of the small dataset bundled with the package (splits ``test`` and ``train``)."""
    return Path(__file__).resolve().parent / "demo_data"


def cache_root() -> Path:
    """``$BEIR_PEFT_CACHE``, default ``~/.cache/beir_peft``."""
    root = os.environ.get(ENV_CACHE)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "beir_peft"


def dataset_cache_dir() -> Path:
    """Where downloaded datasets live: ``<cache root>/datasets/<name>``."""
    return cache_root() / "datasets"


def download_url(name: str) -> str:
    """BEIR's zip URL for ``name``, from ``$BEIR_PEFT_DATASET_URL`` (a template with ``{name}``) if set."""
    template = os.environ.get(ENV_URL) or DOWNLOAD_URL
    if "{name}" not in template:
        raise DatasetError(f"${ENV_URL} must contain '{{name}}', got {template!r}")
    return template.replace("{name}", name)


def resolve_dataset(name_or_path: str | os.PathLike | None, download: bool = True) -> Path:
    """Folder of a dataset given by name or path, downloading a public BEIR dataset if needed.

    In order: ``None`` or ``"demo"`` -> the bundled demo; an existing folder path -> that folder;
    a name -> ``$BEIR_PEFT_DATA/<name>``, then ``$BEIR_PEFT_CACHE/datasets/<name>``, then BEIR's
    download into that cache folder (only when ``download``). A bare name is taken as a folder in
    the current directory only when that folder holds a ``corpus.jsonl``, so a stray folder called
    ``scifact`` does not hide the real one.
    """
    if name_or_path is None or str(name_or_path) == DEMO_DATASET:
        return demo_dataset_path()
    text = os.fspath(name_or_path)
    if not text.strip():
        raise DatasetError("empty dataset name; give a BEIR name (e.g. scifact), a folder, or 'demo'")
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        return _existing_folder(Path(text).expanduser())
    local = Path(text)
    if (local / CORPUS_FILE).is_file():
        return local
    _check_name(text)
    return _find_named(text, download)


def _looks_like_path(text: str) -> bool:
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(sep in text for sep in separators) or text.startswith((".", "~"))


def _existing_folder(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.exists():
        raise DatasetError(f"dataset path {path} is a file, not a folder holding {CORPUS_FILE}")
    raise DatasetError(f"dataset folder {path} does not exist")


def _check_name(name: str) -> None:
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise DatasetError(
            f"invalid dataset name {name!r}: use letters, digits, '_', '-', '.' (or give a folder path)"
        )


def _data_dirs() -> list[Path]:
    """Folders listed in ``$BEIR_PEFT_DATA`` (``os.pathsep``-separated)."""
    value = os.environ.get(ENV_DATA, "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def _candidates(name: str) -> list[Path]:
    """Local folders tried for ``name``, in order."""
    return [folder / name for folder in _data_dirs()] + [dataset_cache_dir() / name]


def _looked_in(name: str) -> str:
    """The places searched for ``name``, for error messages."""
    places = [str(path) for path in _candidates(name)]
    if not _data_dirs():
        places.insert(0, f"${ENV_DATA}/{name} (${ENV_DATA} not set)")
    return ", ".join(places)


def _how_to_point(name: str) -> str:
    return f"point at a local copy with --dataset /path/to/{name} or export {ENV_DATA}=/folder/with/datasets"


def _find_named(name: str, download: bool) -> Path:
    for path in _candidates(name):
        if path.is_dir():
            logger.debug("dataset %s found at %s", name, path)
            return path
    if name not in BEIR_DATASETS and not os.environ.get(ENV_URL):
        raise DatasetError(
            f"unknown dataset {name!r}: not found in {_looked_in(name)}, and not a public BEIR "
            f"dataset ({', '.join(BEIR_DATASETS)}, or '{DEMO_DATASET}'); {_how_to_point(name)}"
        )
    if not download:
        raise DatasetError(
            f"dataset {name!r} not found in {_looked_in(name)} and downloading is off; {_how_to_point(name)}"
        )
    target = dataset_cache_dir() / name
    _download(name, download_url(name), target)
    return target


# --------------------------------------------------------------------------------------------------
# Download


def _download(name: str, url: str, target: Path) -> None:
    """Fetch ``url`` (a zip holding ``<name>/``) and move its folder onto ``target`` atomically."""
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.tmp", dir=target.parent)
    os.close(fd)
    archive = Path(tmp_name)
    try:
        logger.info("downloading BEIR dataset %s from %s", name, url)
        try:
            _fetch(url, archive, name)
        except requests.exceptions.RequestException as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise DatasetError(
                f"dataset {name!r} not found locally (looked in {_looked_in(name)}) and the download "
                f"from {url} failed ({reason}); {_how_to_point(name)}"
            ) from exc
        _extract(archive, name, target)
    finally:
        archive.unlink(missing_ok=True)
    logger.info("dataset %s saved to %s", name, target)


def _fetch(url: str, dest: Path, name: str) -> None:
    """Stream ``url`` into ``dest`` with a progress bar; a short body is an error."""
    import requests
    from tqdm import tqdm

    response = requests.get(url, stream=True, timeout=_TIMEOUT_S)
    try:
        response.raise_for_status()
        total = int(response.headers.get("content-length") or 0) or None
        written = 0
        with (
            open(dest, "wb") as handle,
            tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {name}") as bar,
        ):
            for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                handle.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    finally:
        response.close()
    if total is not None and written != total:
        raise DatasetError(f"download of {url} stopped after {written} of {total} bytes; try again")


def _extract(archive: Path, name: str, target: Path) -> None:
    """Unzip ``archive`` beside ``target`` and rename its dataset folder onto ``target``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(staging)  # zipfile drops absolute paths and '..' parts itself
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"the download for dataset {name!r} is not a valid zip file ({exc})") from exc
        source = staging / name if (staging / name).is_dir() else staging
        if not (source / CORPUS_FILE).is_file() and not _sub_datasets(source):
            raise DatasetError(f"the download for dataset {name!r} holds no {name}/{CORPUS_FILE}")
        try:
            os.replace(source, target)
        except OSError:
            if not target.is_dir():
                raise
            logger.info("dataset %s appeared at %s meanwhile; keeping that copy", name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Reading files


def _resolve_file(path: str | os.PathLike, default_name: str) -> Path:
    """``path`` itself, or ``path/default_name`` when ``path`` is a folder; it must exist."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    return path


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                # some messages end in "at" already ("Unterminated string starting at")
                where = "column" if exc.msg.endswith(" at") else "at column"
                raise DatasetError(
                    f"{path} line {lineno}: invalid JSON ({exc.msg} {where} {exc.colno})"
                ) from None
            except UnicodeDecodeError:
                raise DatasetError(f"{path} line {lineno}: not UTF-8 text") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path} line {lineno}: expected a JSON object, got {_json_type(obj)}")
            yield lineno, obj


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _record_id(obj: dict, path: Path, lineno: int) -> str:
    """The record's ``_id`` as a string (BEIR converts numeric ids too)."""
    if "_id" not in obj:
        raise DatasetError(f"{path} line {lineno}: missing '_id' field")
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(
            f"{path} line {lineno}: '_id' must be a string or integer, got {_json_type(value)}"
        )
    record_id = str(value)
    if not record_id.strip():
        raise DatasetError(f"{path} line {lineno}: empty '_id'")
    if any(char.isspace() for char in record_id):
        raise DatasetError(
            f"{path} line {lineno}: '_id' {record_id!r} contains whitespace "
            "(ids must be one word: TREC run files separate their fields by whitespace)"
        )
    return record_id


def _string_field(obj: dict, key: str, path: Path, lineno: int, required: bool) -> str:
    """``obj[key]`` as a string; a missing or null optional field is ``""``."""
    value = obj.get(key)
    if value is None:
        if required:
            what = "missing" if key not in obj else "null"
            raise DatasetError(f"{path} line {lineno}: {what} '{key}' field")
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{path} line {lineno}: '{key}' must be a string, got {_json_type(value)}")
    return value


def _first_line_of(path: Path, record_id: str) -> int:
    """Line number of the first record with ``record_id`` (only used to report duplicates)."""
    for lineno, obj in iter_jsonl(path):
        if str(obj.get("_id")) == record_id:
            return lineno
    return 0


def _duplicate(path: Path, record_id: str, lineno: int) -> DatasetError:
    first = _first_line_of(path, record_id)
    return DatasetError(f"{path} line {lineno}: duplicate _id {record_id!r} (first seen on line {first})")


def load_corpus(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Read ``corpus.jsonl`` (or a folder holding it) into doc_id -> {"title": str, "text": str}.

    A missing or null title becomes ``""``; a document needs a non-empty title or text.
    """
    path = _resolve_file(path, CORPUS_FILE)
    corpus: dict[str, dict[str, str]] = {}
    for lineno, obj in iter_jsonl(path):
        doc_id = _record_id(obj, path, lineno)
        text = _string_field(obj, "text", path, lineno, required=True)
        title = _string_field(obj, "title", path, lineno, required=False)
        if not text.strip() and not title.strip():
            raise DatasetError(f"{path} line {lineno}: document {doc_id!r} has neither title nor text")
        if doc_id in corpus:
            raise _duplicate(path, doc_id, lineno)
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise DatasetError(f"{path} holds no documents")
    return corpus


def load_queries(path: str | os.PathLike) -> dict[str, str]:
    """Read ``queries.jsonl`` (or a folder holding it) into query_id -> text, in file order."""
    path = _resolve_file(path, QUERIES_FILE)
    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        query_id = _record_id(obj, path, lineno)
        text = _string_field(obj, "text", path, lineno, required=True)
        if not text.strip():
            raise DatasetError(f"{path} line {lineno}: query {query_id!r} has empty text")
        if query_id in queries:
            raise _duplicate(path, query_id, lineno)
        queries[query_id] = text
    if not queries:
        raise DatasetError(f"{path} holds no queries")
    return queries


def _split_row(line: str) -> list[str]:
    return [part.strip() for part in line.split("\t")] if "\t" in line else line.split()


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


#: what the columns of a qrels header are called (compared lower-case, without '-', '_' and spaces)
_QUERY_COLUMNS = frozenset({"queryid", "query", "qid", "topic", "topicid", "questionid", "question"})
_DOC_COLUMNS = frozenset(
    {"corpusid", "corpus", "docid", "doc", "documentid", "document", "did", "passageid", "passage", "pid"}
)
_SCORE_COLUMNS = frozenset(
    {"score", "relevance", "rel", "relevancy", "label", "grade", "judgement", "judgment", "rating", "qrel"}
)


def _column_name(text: str) -> str:
    return re.sub(r"[-_\s]", "", text).lower()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_header(parts: list[str]) -> bool:
    """A header row names its columns (``query-id corpus-id score``), by content, not by position:
    a data row with a bad score (``q1 d1 0.5``) must be an error, not skipped as a header."""
    if len(parts) != 3 or _is_number(parts[2]):
        return False
    query, doc, score = (_column_name(part) for part in parts)
    return score in _SCORE_COLUMNS or (query in _QUERY_COLUMNS and doc in _DOC_COLUMNS)


def _read_qrels(path: Path) -> list[tuple[str, str, int, int]]:
    """Rows ``(query_id, doc_id, score, line number)`` of a qrels TSV, a header line skipped.

    Only the first non-blank line may be a header, and only when it reads like one
    (:func:`_is_header`); any other row with a non-integer score is an error naming its line.
    """
    rows: list[tuple[str, str, int, int]] = []
    with open(path, encoding="utf-8-sig", errors="strict") as handle:
        try:
            lines = list(enumerate(handle, 1))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    first = True
    for lineno, raw in lines:
        line = raw.strip()
        if not line:
            continue
        parts = _split_row(line)
        if first and _is_header(parts):
            first = False
            continue  # e.g. "query-id  corpus-id  score"
        first = False
        if len(parts) != 3:
            raise DatasetError(
                f"{path} line {lineno}: expected 3 columns (query-id, corpus-id, score), got {len(parts)}"
            )
        query_id, doc_id, score = parts
        if not query_id or not doc_id:
            raise DatasetError(f"{path} line {lineno}: empty query-id or corpus-id")
        if not _is_int(score):
            header = (
                " (a header line names its columns, e.g. query-id corpus-id score)" if lineno == 1 else ""
            )
            raise DatasetError(f"{path} line {lineno}: score {score!r} is not an integer{header}")
        rows.append((query_id, doc_id, int(score), lineno))
    if not rows:
        raise DatasetError(f"{path} holds no judgements")
    return rows


def _group_qrels(rows: list[tuple[str, str, int, int]], path: Path) -> dict[str, dict[str, int]]:
    """query_id -> {doc_id: score}; a repeated pair keeps its last score, as BEIR's loader does."""
    qrels: dict[str, dict[str, int]] = {}
    repeated = 0
    for query_id, doc_id, score, _ in rows:
        docs = qrels.setdefault(query_id, {})
        repeated += doc_id in docs
        docs[doc_id] = score
    if repeated:
        logger.warning("%s: %d repeated (query, doc) rows; the last score of each is kept", path, repeated)
    return qrels


def load_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Read a qrels TSV into query_id -> {doc_id: int score}; the header line is optional."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    return _group_qrels(_read_qrels(path), path)


# --------------------------------------------------------------------------------------------------
# Loading a split


def available_splits(folder: str | os.PathLike) -> list[str]:
    """Names of the splits in ``folder/qrels`` (``*.tsv`` file stems), sorted."""
    qrels_dir = Path(folder) / QRELS_DIR
    if not qrels_dir.is_dir():
        return []
    return sorted(path.stem for path in qrels_dir.glob("*.tsv") if path.is_file())


def _sub_datasets(folder: Path) -> list[str]:
    """Sub-folders holding a corpus (cqadupstack's layout)."""
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if (child / CORPUS_FILE).is_file())


def _check_layout(folder: Path, split: str) -> Path:
    """Fail early, before any parsing, on missing files or an unknown split; returns the qrels path."""
    corpus_path = folder / CORPUS_FILE
    if not corpus_path.is_file():
        subs = _sub_datasets(folder)
        if subs:
            raise DatasetError(
                f"{folder} holds several datasets ({', '.join(subs)}); load one by path, "
                f"e.g. {folder / subs[0]}"
            )
        raise DatasetError(f"missing file {corpus_path}")
    if not (folder / QUERIES_FILE).is_file():
        raise DatasetError(f"missing file {folder / QUERIES_FILE}")
    if not _SAFE_NAME.fullmatch(split) or ".." in split:
        raise DatasetError(f"invalid split name {split!r}")
    qrels_path = folder / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(folder)
        found = f"available splits: {', '.join(splits)}" if splits else "the folder has no qrels/*.tsv"
        raise DatasetError(f"unknown split {split!r}: missing file {qrels_path} ({found})")
    return qrels_path


def _check_ids(
    rows: list[tuple[str, str, int, int]],
    known: dict,
    column: int,
    what: str,
    source: str,
    path: Path,
    tolerance: float,
) -> None:
    """Raise on rows whose id in ``column`` is not in ``known``, unless few enough to tolerate."""
    unknown = [row for row in rows if row[column] not in known]
    if not unknown:
        return
    first = unknown[0]
    where = f"{path} line {first[3]}: {what} id {first[column]!r} is not in {source}"
    count = f"{len(unknown)} of {len(rows)} rows name {what} ids not in {source}"
    if len(unknown) > tolerance * len(rows):
        raise DatasetError(f"{where} ({count})")
    logger.warning("%s (%s); kept as relevant documents no system can retrieve", where, count)


def _dataset_name(folder: Path) -> str:
    return DEMO_DATASET if folder.resolve() == demo_dataset_path() else folder.resolve().name


def load_dataset(
    name_or_path: str | os.PathLike | None = None, split: str = "test", *, strict: bool = False
) -> BeirDataset:
    """Resolve (see :func:`resolve_dataset`), read and cross-check one split of a dataset.

    Queries kept are those with at least one qrels row in ``split``, in ``queries.jsonl`` order.
    Qrels naming an unknown query are an error; qrels naming documents missing from the corpus are
    an error when ``strict`` or when more than ``MAX_MISSING_DOC_FRACTION`` of the rows do so.
    """
    folder = resolve_dataset(name_or_path)
    qrels_path = _check_layout(folder, split)
    rows = _read_qrels(qrels_path)
    corpus = load_corpus(folder / CORPUS_FILE)
    all_queries = load_queries(folder / QUERIES_FILE)
    _check_ids(rows, all_queries, 0, "query", QUERIES_FILE, qrels_path, tolerance=0.0)
    tolerance = 0.0 if strict else MAX_MISSING_DOC_FRACTION
    _check_ids(rows, corpus, 1, "corpus", CORPUS_FILE, qrels_path, tolerance=tolerance)
    qrels = _group_qrels(rows, qrels_path)
    queries = {query_id: text for query_id, text in all_queries.items() if query_id in qrels}
    dataset = BeirDataset(_dataset_name(folder), folder, split, corpus, queries, qrels)
    logger.info("loaded %s from %s", dataset.describe(), folder)
    return dataset
