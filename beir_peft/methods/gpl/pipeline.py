"""GPL end to end: query generation -> hard negatives -> pseudo labels -> MarginMSE training.

Wang et al. 2022 (seed 002), sections 3-4. :func:`run_gpl` runs the stages into one run folder;
each stage writes its output atomically and is skipped when that output exists, so a killed run
resumes at the stage (and, in training, the checkpoint) where it stopped::

    DIR/gpl_config.json          the settings (a rerun with other data-shaping settings is refused)
    DIR/corpus_sample.json       0. the passages used and queries per passage (the 250K rule)
    DIR/generated_queries.jsonl  1. {"_id", "text", "doc_id"} per query (or the user's --queries)
    DIR/hard_negatives.jsonl     2. {"qid", "neg": {miner: [doc_id, ...]}} per query
    DIR/training_data.tsv        3. qid, positive id, negative id, CE margin: steps x batch rows
    DIR/tsdae/                   (optional) the backbone after TSDAE on the sampled corpus
    DIR/config.json, weights.safetensors, README.md   4. the trained retriever (beir_peft.load)

Long stages 1 and 3 write shards (``*.parts/``) as they go and merge them at the end, so even a
stage that is killed half-way keeps its finished shards.

The student is ``ft`` (full fine-tuning, the paper), ``pt2-dpr`` (deep prompts: GPL with a fraction
of a percent of the parameters trained per domain) or ``lora``, on any backbone. With ``similarity
"dot"`` (the paper's) the student embeds without a final ``Normalize`` and is saved as a dot-product
model (``normalize: false``, ``score_function: "dot"``), as GPL's released students are: its margins
are raw cross-encoder logit differences, which unit vectors (dot products in [-1, 1]) cannot reach.
With ``"cosine"`` it embeds on the unit sphere and scores by cosine (``score_function: "cos_sim"``).

The teacher of stage 3 is injectable (``run_gpl(..., labeler=...)``, any
:class:`~.pseudo_labels.MarginLabeler`); by default it is the cross-encoder named by
``GPLConfig.cross_encoder``. The run folder and the trained retriever record which one was used.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ...data import passage_text
from ...encoders.backbone import DEFAULT_BACKBONE
from ...errors import ConfigError, DatasetError
from ...io import atomic_open, write_json_atomic
from ...registry import student_methods
from ...search import SINGLE_VECTOR_SEARCHES
from ...training.adaptation_check import HeldOutSignal, held_out_sample, run_check
from ...training.processes import process_group
from .negatives import DEFAULT_MINERS, mine_negatives
from .pseudo_labels import (
    DEFAULT_CROSS_ENCODER,
    MarginLabeler,
    PseudoLabeler,
    chunks,
    cross_encoder_record,
    draw_triples,
)
from .query_generation import DEFAULT_GENERATOR, GenerationSettings, QueryGenerator, generate_queries
from .sizing import PAPER_TOTAL_QUERIES, gpl_sizing, sample_passages

logger = logging.getLogger(__name__)

CONFIG_FILE = "gpl_config.json"
SAMPLE_FILE = "corpus_sample.json"
QUERIES_FILE = "generated_queries.jsonl"
NEGATIVES_FILE = "hard_negatives.jsonl"
TRAINING_FILE = "training_data.tsv"
TSDAE_DIR = "tsdae"
STUDENTS = student_methods()
#: negative mining's searches (mine_negatives): the single-vector ones, and sharded exact search
MINING_SEARCHES = (*SINGLE_VECTOR_SEARCHES, "sharded")

#: steps, warm-up and the generated-query budget; "paper" is section 4's setting
PRESETS: dict[str, dict[str, int]] = {
    "paper": {"steps": 140_000, "warmup_steps": 1_000, "total_queries": PAPER_TOTAL_QUERIES},
    # a GPU-hour budget: GPL saturates around 100k steps, small corpora gain most early
    "small": {"steps": 10_000, "warmup_steps": 500, "total_queries": 50_000},
    # a CPU smoke run on a few thousand passages
    "tiny": {"steps": 200, "warmup_steps": 20, "total_queries": 2_000},
}
#: settings that do not change any stage's output (excluded from the rerun check)
OPERATIONAL = (
    "generation_batch_size",
    "cross_encoder_batch_size",
    "shard_size",
    "device",
    "mining_batch_size",
)


@dataclass
class QueryStageConfig:
    """The settings of stages 0 and 1 (the corpus sample, the 250K rule, query generation), which GPL
    and QGen share; ``None`` sizing fields take the ``preset``'s value (default ``"paper"``)."""

    preset: str = "paper"
    student: str = "ft"
    backbone: str = DEFAULT_BACKBONE
    generator: str = DEFAULT_GENERATOR
    total_queries: int | None = None
    queries_per_passage: int | None = None
    num_passages: int | None = None
    max_seq_length: int = 350
    top_p: float = 0.95
    top_k: int = 25
    temperature: float = 1.0
    max_query_length: int = 64
    batch_size: int = 32
    seed: int = 42
    # kept out of training for the adaptation check (at most a tenth of the queries; 0: no check)
    held_out_queries: int = 200
    generation_batch_size: int = 32
    shard_size: int = 10_000
    device: str | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose {', '.join(PRESETS)}")
        for key, value in PRESETS[self.preset].items():
            if hasattr(self, key) and getattr(self, key) is None:
                setattr(self, key, value)
        if self.student not in STUDENTS:
            raise ConfigError(f"the students are {', '.join(STUDENTS)}; got {self.student!r}")
        for name in ("total_queries", "shard_size", "max_seq_length"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (in-batch negatives need a second pair)")
        if self.held_out_queries < 0:
            raise ConfigError(f"held_out_queries must be >= 0, got {self.held_out_queries}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GPLConfig(QueryStageConfig):
    """GPL settings: :class:`QueryStageConfig`'s, then mining, labelling and training."""

    cross_encoder: str = DEFAULT_CROSS_ENCODER
    miners: list[str] = field(default_factory=lambda: list(DEFAULT_MINERS))
    negatives_per_miner: int = 50
    # or faiss-flat / faiss-hnsw for large corpora; sharded: vectors on disk, split across processes
    # (what exact becomes on several processes)
    mining_search: str = "exact"
    mining_max_seq_length: int | None = None  # None: each dense miner's own (a CPU budget: shorter)
    steps: int | None = None
    warmup_steps: int | None = None
    learning_rate: float | None = None
    similarity: str = "dot"
    tsdae: bool = False
    tsdae_steps: int = 100_000
    checkpoint_every: int = 1_000
    cross_encoder_batch_size: int = 64
    mining_batch_size: int = 128

    def __post_init__(self):
        super().__post_init__()
        if not self.miners:
            raise ConfigError("GPL needs at least one negative miner")
        if self.mining_search not in MINING_SEARCHES:
            raise ConfigError(
                f"mining_search must be one of {', '.join(MINING_SEARCHES)}, got {self.mining_search!r}"
            )
        if self.similarity not in ("dot", "cosine"):
            raise ConfigError(f"similarity must be dot or cosine, got {self.similarity!r}")
        for name in ("negatives_per_miner", "steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")

    def student_embedding(self) -> dict[str, Any]:
        """How the student embeds and scores: raw dot-product vectors, or unit vectors and cosine."""
        if self.similarity == "dot":
            return {"normalize": False, "score_function": "dot"}
        return {"normalize": True, "score_function": "cos_sim"}


def run_gpl(
    corpus: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    config: GPLConfig | None = None,
    *,
    queries_file: str | os.PathLike | None = None,
    dataset_name: str = "corpus",
    overwrite: bool = False,
    labeler: MarginLabeler | None = None,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] = logger.info,
) -> Path:
    """Run (or resume) GPL on ``corpus`` into ``output_dir``; returns the folder of the trained retriever.

    ``queries_file``: the user's own queries instead of generated ones, a JSONL file with ``text``
    and ``doc_id`` (the passage the query was written for) per line, ``_id`` optional.
    ``labeler``: the teacher of stage 3, any :class:`MarginLabeler` (e.g.
    :class:`~.oracle.OracleLabeler`); ``None`` loads the cross-encoder ``config.cross_encoder``
    (only when labels are still to be made). Its ``describe()`` record is saved with the run.
    """
    config = config or GPLConfig()
    output = Path(output_dir)
    if labeler is not None and not isinstance(labeler, MarginLabeler):
        raise ConfigError(
            f"labeler must have margins(triples, queries, corpus) and describe(); got {type(labeler).__name__}"
        )
    teacher = labeler.describe() if labeler is not None else cross_encoder_record(config.cross_encoder)
    group = process_group()
    _check_folder(output, config, queries_file, overwrite, teacher, group)
    # on several processes only the main one speaks; the generation and labelling shards are split by rank
    echo = echo if group.is_main_process else _silent
    show_progress_bar = show_progress_bar and group.is_main_process
    device = config.device or (str(group.device) if group.num_processes > 1 else None)

    sample, generated = query_stages(
        corpus, output, config, queries_file, group, echo, device, show_progress_bar
    )
    queries = {row["_id"]: row["text"] for row in generated}
    positives = {row["_id"]: row["doc_id"] for row in generated}
    training_rows, held_out = split_held_out(generated, config)
    if len(training_rows) < 2:
        raise DatasetError(f"GPL needs at least 2 training queries, got {len(training_rows)}")
    sub_corpus = {doc_id: corpus[doc_id] for doc_id in sample["doc_ids"]}
    # exact mining on several processes: the passages' encoding split across them (vector shards)
    search = (
        "sharded" if config.mining_search == "exact" and group.num_processes > 1 else config.mining_search
    )
    vectors = output / f"{NEGATIVES_FILE}.vectors" if search == "sharded" else None
    negatives_rows = _stage(
        group,
        output / NEGATIVES_FILE,
        echo,
        "hard negatives",
        lambda: [
            {"qid": qid, "neg": neg}
            for qid, neg in mine_negatives(
                config.miners,
                sub_corpus,
                queries,
                positives,
                depth=config.negatives_per_miner,
                search=search,
                batch_size=config.mining_batch_size,
                device=device,
                show_progress_bar=show_progress_bar,
                max_seq_length=config.mining_max_seq_length,
                vectors_dir=vectors,
                shard_size=config.shard_size,
            ).items()
        ],  # fmt: skip
        reader=_read_jsonl,
        writer=_write_jsonl,
        parts=vectors,  # every process mines (its share of the encoding); the shards go once merged
    )
    negatives = {row["qid"]: row["neg"] for row in negatives_rows}
    training = _stage(
        group,
        output / TRAINING_FILE,
        echo,
        "pseudo labels",
        lambda: _label(
            queries,
            [row["_id"] for row in training_rows],  # the held-out queries are mined, never labelled
            positives,
            negatives,
            corpus,
            config,
            labeler,
            device,
            group,
            output / f"{TRAINING_FILE}.parts",
            show_progress_bar,
        ),
        reader=_read_training_tsv,
        writer=_write_training_tsv,
        parts=output / f"{TRAINING_FILE}.parts",
    )
    backbone = config.backbone
    if config.tsdae:
        from .tsdae import train_tsdae

        tsdae_dir = output / TSDAE_DIR
        pretrained = (tsdae_dir / "modules.json").is_file()
        group.wait_for_everyone()  # every process has looked before the main one writes
        if pretrained:
            echo(f"TSDAE: reusing {tsdae_dir}")
        else:
            echo(f"TSDAE: pre-training {backbone} on {len(sub_corpus)} passages")
            train_tsdae(
                backbone, [passage_text(d) for d in sub_corpus.values()], tsdae_dir, config, show_progress_bar
            )
        backbone = str(tsdae_dir.resolve())
    echo(f"training: {config.student} on {backbone}, {config.steps} steps of {config.batch_size}")
    folder = _train(
        training, queries, corpus, backbone, config, teacher, output, dataset_name, show_progress_bar
    )
    check_adapted(folder, held_out, corpus, config, group, echo)
    return folder


# ------------------------------------------------------------------------------- stage plumbing
def _silent(_message: str) -> None:
    """The ``echo`` of the processes other than the main one."""


def _stage(
    group, path: Path, echo, name: str, build, *, reader=None, writer=None, parts=None, given=None,
    given_note="",
):  # fmt: skip
    """The stage's output: read from ``path`` when it exists, else built and written atomically.

    ``parts``: the stage's shard folder, removed once the merged output is in place. On several
    processes (``group``) a sharded stage (one with ``parts``) is built by all of them, each its own
    shards (:func:`_sharded`); any other is built by the main process and read by the others. Only
    the main process writes.
    """
    exists = path.is_file()
    group.wait_for_everyone()  # every process has looked before any writes
    if exists:
        echo(f"{name}: reusing {path}")
        return (reader or _read_json)(path)
    echo(f"{name}: {given_note}" if given is not None else f"{name}: computing")
    value = None
    if group.is_main_process or (parts is not None and given is None):
        value = given() if given is not None else build()
    group.wait_for_everyone()  # every process has read the shards
    if group.is_main_process:
        (writer or write_json_atomic)(path, value)
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)
    group.wait_for_everyone()
    return value if value is not None else (reader or _read_json)(path)


def _check_folder(
    output: Path, config: GPLConfig, queries_file, overwrite: bool, teacher: dict, group
) -> None:
    """Refuse a folder holding a GPL run with other settings (every process); with ``overwrite``,
    clear it; record the settings (the main process)."""
    record = {
        **config.to_dict(),
        "queries_file": str(queries_file) if queries_file else None,
        "pseudo_labeler": teacher,
        # --batch-size is per process: N processes label and train on N times the triples
        "world_size": group.num_processes,
    }

    def older(saved: dict) -> dict:
        # folders written before the teacher was recorded were labelled by their cross-encoder
        saved.setdefault("pseudo_labeler", cross_encoder_record(saved.get("cross_encoder", "")))
        saved.setdefault("world_size", 1)  # and by one process
        saved.setdefault("held_out_queries", 0)  # and trained on every query
        return saved

    check_run_settings(
        output, CONFIG_FILE, record, OPERATIONAL, "GPL", overwrite, group, older=older,
        files=(SAMPLE_FILE, QUERIES_FILE, NEGATIVES_FILE, TRAINING_FILE),
        folders=(TSDAE_DIR, f"{QUERIES_FILE}.parts", f"{NEGATIVES_FILE}.vectors", f"{TRAINING_FILE}.parts"),
    )  # fmt: skip


def check_run_settings(
    output: Path, config_file: str, record: Mapping[str, Any], operational: Iterable[str], what: str,
    overwrite: bool, group, *, files: Iterable[str] = (), folders: Iterable[str] = (),
    older: Callable[[dict], dict] | None = None,
) -> None:  # fmt: skip
    """The run folder's settings check (GPL's and QGen's): refuse a folder whose ``config_file``
    records other settings than ``record`` (but the ``operational`` ones; ``older`` fills in what
    older folders did not record), on every process; with ``overwrite``, remove the record, the
    stage ``files`` and ``folders`` and the training run first; then write ``record`` (the main
    process)."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    path = output / config_file
    if overwrite and output.is_dir() and group.is_main_process:
        for name in (config_file, *files):
            (output / name).unlink(missing_ok=True)
        for name in folders:
            shutil.rmtree(output / name, ignore_errors=True)
        from ...training.pairs import pair_run_folder

        pair_run_folder(output).clear()
    elif path.is_file() and not overwrite:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved = older(saved) if older is not None else saved
        changed = sorted(k for k in record if k not in operational and saved.get(k) != record[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {record[k]!r}" for k in changed)
            raise ConfigError(
                f"{output} holds a {what} run with other settings ({detail}); use another folder or --overwrite"
            )
    group.wait_for_everyone()  # every process has checked before the main one writes
    if group.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, dict(record))
    group.wait_for_everyone()


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _sharded(folder: Path, items: list, size: int, make, desc: str, show: bool, group) -> list:
    """Process ``items`` in shards of ``size``; each shard's rows saved in ``folder`` once done.

    Process ``r`` of ``N`` (``group``) makes shards ``r, r + N, ...``; once all are done the rows are
    read back in shard order, so the result does not depend on ``N``. ``make(first, part)`` must
    depend only on its arguments (generation is seeded by the first item's position).
    """
    folder.mkdir(parents=True, exist_ok=True)
    shards = [part for _index, part in chunks(items, size)]
    mine = range(group.process_index, len(shards), group.num_processes)
    made: dict[int, list] = {}
    for index in tqdm(mine, desc=desc, disable=not show):
        path = folder / f"part-{index:05d}.jsonl"
        if not path.is_file():
            made[index] = list(make(index * size, shards[index]))
            _write_jsonl(path, made[index])
    group.wait_for_everyone()
    rows: list = []
    for index in range(len(shards)):
        rows.extend(made[index] if index in made else _read_jsonl(folder / f"part-{index:05d}.jsonl"))
    return rows


# ------------------------------------------------------------------------------- the stages
def query_stages(
    corpus, output: Path, config: QueryStageConfig, queries_file, group, echo, device, show: bool
):
    """Stages 0 and 1, shared with QGen: the corpus sample and the generated (or the user's) queries,
    each read back when its file exists; returns ``(sample, rows)``."""
    sample = _stage(
        group, output / SAMPLE_FILE, echo, "corpus sample", lambda: _sample(corpus, config, queries_file)
    )
    generated = _stage(
        group,
        output / QUERIES_FILE,
        echo,
        "queries",
        lambda: _generate(corpus, sample, config, device, group, output / f"{QUERIES_FILE}.parts", show),
        reader=_read_jsonl,
        writer=_write_jsonl,
        parts=output / f"{QUERIES_FILE}.parts",
        given=(lambda: _read_user_queries(Path(queries_file), corpus)) if queries_file else None,
        given_note=f"the user's queries from {queries_file}",
    )
    return sample, generated


def split_held_out(generated: list[dict[str, str]], config: QueryStageConfig):
    """``(training rows, held-out rows)`` of the generated queries: ``config.held_out_queries`` of
    them (at most a tenth, drawn with the run's seed) kept out of training for the adaptation check."""
    held = set(held_out_sample([row["_id"] for row in generated], config.held_out_queries, config.seed))
    return [r for r in generated if r["_id"] not in held], [r for r in generated if r["_id"] in held]


def check_adapted(folder: Path, held_out, corpus, config: QueryStageConfig, group, echo) -> None:
    """The adaptation check (training/adaptation_check.py) of a finished run, on the main process:
    the start model (``config.backbone`` as it is, at the student's input length) against the saved
    student, on the held-out generated queries (none: no check); recorded in the folder, its line
    echoed (a warning when it is not better)."""
    if group.is_main_process:
        from ...models.loading import load, load_model

        def start():
            model = load_model(config.backbone, device=config.device)
            # at the student's input length: both models read the same text
            model.max_seq_length = config.max_seq_length
            return model

        run_check(
            folder, HeldOutSignal.generated_queries(held_out, corpus), start,
            lambda: load(folder, device=config.device), start_name=config.backbone, echo=echo,
        )  # fmt: skip
    group.wait_for_everyone()


def _sample(corpus: Mapping[str, Any], config: QueryStageConfig, queries_file) -> dict[str, Any]:
    if queries_file:  # the user's queries: their passages are all in play, nothing is generated
        return {"doc_ids": list(corpus), "queries_per_passage": None, "corpus_size": len(corpus)}
    num, per_passage = gpl_sizing(
        len(corpus), config.total_queries, config.queries_per_passage, config.num_passages
    )
    return {
        "doc_ids": sample_passages(list(corpus), num, config.seed),
        "queries_per_passage": per_passage,
        "corpus_size": len(corpus),
        "total_queries": config.total_queries,
    }


def _generate(
    corpus, sample, config: QueryStageConfig, device, group, parts: Path, show: bool
) -> list[dict[str, str]]:
    generator = QueryGenerator(
        config.generator,
        device=device,
        settings=GenerationSettings(
            top_p=config.top_p,
            top_k=config.top_k,
            temperature=config.temperature,
            max_query_length=config.max_query_length,
            max_passage_length=config.max_seq_length,
            batch_size=config.generation_batch_size,
        ),
    )
    per_passage = sample["queries_per_passage"]
    return _sharded(
        parts,
        sample["doc_ids"],
        config.shard_size,
        lambda first, ids: generate_queries(generator, corpus, ids, per_passage, config.seed, first),
        "generating queries",
        show,
        group,
    )


def _read_user_queries(path: Path, corpus: Mapping[str, Any]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"missing queries file {path}")
    rows, seen = [], set()
    from ...data import iter_jsonl

    for lineno, obj in iter_jsonl(path):
        text, doc_id = obj.get("text"), obj.get("doc_id")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{path} line {lineno}: missing or empty 'text'")
        if not isinstance(doc_id, (str, int)) or str(doc_id) not in corpus:
            raise DatasetError(f"{path} line {lineno}: 'doc_id' {doc_id!r} is not a passage of the corpus")
        qid = str(obj.get("_id", f"userQ{lineno}"))
        if qid in seen:
            raise DatasetError(f"{path} line {lineno}: duplicate _id {qid!r}")
        seen.add(qid)
        rows.append({"_id": qid, "text": text, "doc_id": str(doc_id)})
    if not rows:
        raise DatasetError(f"{path} holds no queries")
    return rows


def _label(queries, training_ids, positives, negatives, corpus, config: GPLConfig, labeler, device, group,
           parts: Path, show: bool):  # fmt: skip
    wanted = config.steps * config.batch_size * group.num_processes  # every step's batch on every process
    triples = draw_triples(training_ids, positives, negatives, wanted, config.seed)
    if labeler is None:
        labeler = PseudoLabeler(
            config.cross_encoder, max_length=config.max_seq_length, batch_size=config.cross_encoder_batch_size,
            device=device,
        )  # fmt: skip

    def make(_first, part):
        margins = labeler.margins(part, queries, corpus)
        return [
            {"qid": q, "pos": p, "neg": n, "margin": m} for (q, p, n), m in zip(part, margins, strict=True)
        ]

    return _sharded(parts, triples, config.shard_size, make, "pseudo labels", show, group)


def _teacher_note(teacher: Mapping[str, Any]) -> str:
    kind = teacher.get("kind")
    if kind == "cross-encoder":
        return f"cross-encoder {teacher.get('model')}"
    if kind == "oracle":
        anti = "inverted (anti-oracle) " if teacher.get("inverted") else ""
        return f"{anti}oracle from relevance judgements ({teacher.get('source') or 'qrels'}), not a real GPL teacher"
    return f"{kind or 'custom'} labeller"


def _write_training_tsv(path: Path, rows) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["qid", "pos", "neg", "margin"])
        for row in rows:
            writer.writerow([row["qid"], row["pos"], row["neg"], repr(float(row["margin"]))])


def _read_training_tsv(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header != ["qid", "pos", "neg", "margin"]:
            raise DatasetError(f"{path}: not a GPL training file (header {header})")
        return [{"qid": q, "pos": p, "neg": n, "margin": float(m)} for q, p, n, m in reader]


def _train(
    training, queries, corpus, backbone: str, config: GPLConfig, teacher: dict, output: Path, dataset_name,
    show: bool,
) -> Path:  # fmt: skip
    from ...losses import DualEncoderMarginMSELoss
    from ...models.tuned import build_retriever
    from ...training.config import TrainingConfig
    from ...training.pairs import fit

    # dot: raw pooled vectors (the backbone's final Normalize dropped), saved as a dot-product model
    retriever = build_retriever(
        config.student, backbone, max_seq_length=config.max_seq_length, **config.student_embedding()
    )
    learning_rate = config.learning_rate
    if learning_rate is None and config.student == "ft":
        learning_rate = 2e-5  # sentence-transformers' fit default, which GPL's code uses
    train_config = TrainingConfig(
        epochs=1,
        batch_size=config.batch_size,
        learning_rate=learning_rate,
        warmup_ratio=config.warmup_steps / config.steps,
        max_grad_norm=1.0,  # sentence-transformers' fit default
        backbone_dropout=True,  # the whole student in train mode, as sentence-transformers' fit trains it
        max_steps=config.steps,
        checkpoint_every=config.checkpoint_every,
        seed=config.seed,
    )
    rows = [
        {"query": r["qid"], "positive": r["pos"], "negative": r["neg"], "label": r["margin"]}
        for r in training
    ]
    texts = {
        "query": queries.__getitem__,
        "positive": lambda doc_id: passage_text(corpus[doc_id]),
        "negative": lambda doc_id: passage_text(corpus[doc_id]),
    }
    return fit(
        retriever,
        rows,
        output,
        train_config,
        {
            "dataset": dataset_name,
            "split": "gpl",
            "method": "gpl",
            # a plain string, so the model card shows it: an oracle run must never pass as real GPL
            "pseudo_labeler": _teacher_note(teacher),
            "gpl": {
                **{k: v for k, v in config.to_dict().items() if k not in OPERATIONAL},
                "pseudo_labeler": teacher,
            },
        },
        make_loss=lambda module: DualEncoderMarginMSELoss(module, similarity=config.similarity),
        no_duplicates=False,
        texts_of=texts,
        resume=True,
        show_progress_bar=show,
    )
