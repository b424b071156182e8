"""``beir-peft adapt gpl | qgen | art``: retrievers trained without relevance labels."""

from __future__ import annotations

from pathlib import Path

import click

from ..encoders.backbone import POOLING_MODES
from ..io import check_output_path
from ..methods.art import ARTConfig
from ..methods.gpl import PRESETS, GPLConfig, QGenConfig
from ..methods.gpl.qgen import SAMPLERS
from ..registry import student_methods
from . import options
from .common import echo, quiet_libraries


def _gpl(name: str):
    return options.config_default(GPLConfig, name)


def _qgen(name: str):
    return options.config_default(QGenConfig, name)


def _art(name: str):
    return options.config_default(ARTConfig, name)


def _query_stage_options(preset_help: str, backbone_help: str, queries_help: str):
    """GPL's and QGen's options for the corpus sample, the generation and the student: --preset,
    --student, --backbone, --generator, then (after the method's own) --queries,
    --queries-per-passage and --num-passages. Returns ``(before, after)`` decorators."""

    def before(command):
        for option in reversed([
            click.option("--preset", type=click.Choice(sorted(PRESETS)), default=_gpl("preset"), show_default=True,
                         help=preset_help),
            click.option("--student", type=click.Choice(student_methods()), default=_gpl("student"),
                         show_default=True, help="What is trained: the whole backbone (the paper), deep prompts, or LoRA."),
            click.option("--backbone", default=None, help=backbone_help),
            click.option("--generator", default=None,
                         help="Seq2seq query generator [default: BeIR/query-gen-msmarco-t5-base-v1]."),
        ]):  # fmt: skip
            command = option(command)
        return command

    def after(command):
        for option in reversed([
            click.option("--queries", "queries_file", type=click.Path(dir_okay=False, path_type=Path),
                         help=queries_help),
            click.option("--queries-per-passage", type=click.IntRange(min=1),
                         help="Override the 250K rule's queries per passage."),
            click.option("--num-passages", type=click.IntRange(min=1), help="Override the 250K rule's corpus sample size."),
            options.held_out("queries", None, "their source passage as the answer",
                             documented_default=_gpl("held_out_queries")),
        ]):  # fmt: skip
            command = option(command)
        return command

    return before, after


_GPL_BEFORE, _GPL_AFTER = _query_stage_options(
    "Steps, warm-up and query budget: paper (140k steps, 250K queries), small, tiny.",
    "Student backbone [default: all-MiniLM-L6-v2; the paper: GPL/msmarco-distilbert-margin-mse].",
    "Use these queries instead of generating them: JSONL with text and doc_id per line.",
)
_QGEN_BEFORE, _QGEN_AFTER = _query_stage_options(
    "The generated-query budget, as GPL's: paper (250K queries), small, tiny.",
    "Student backbone [default: all-MiniLM-L6-v2].",
    "Train on these queries instead of generating them (JSONL with text and doc_id per line), "
    "e.g. a GPL run's generated_queries.jsonl.",
)


@click.group()
def adapt():
    """Retrievers without relevance labels: GPL and its baseline QGen (a target corpus), ART (questions only)."""


@adapt.command("gpl")
@options.dataset(
    required=True, help="Target corpus: a BEIR dataset name or folder (only corpus.jsonl is read)."
)
@options.output(
    folder=True, required=True, help="Run folder: every stage's output, then the trained retriever."
)
@_GPL_BEFORE
@click.option(
    "--cross-encoder", default=None, help="Pseudo labeler [default: cross-encoder/ms-marco-MiniLM-L-6-v2]."
)
@click.option(
    "--miner",
    "miners",
    multiple=True,
    help="Negative miner (repeatable): a sentence-transformers model, a saved folder or bm25 "
    "[default: msmarco-distilbert-base-v3 and msmarco-MiniLM-L-6-v3].",
)
@_GPL_AFTER
@click.option("--steps", type=click.IntRange(min=1), help="Training steps [default: from --preset].")
@options.batch_size(_gpl("batch_size"), minimum=2)
@options.learning_rate(help="Learning rate [default: 2e-5 for ft, the package default for the others].")
@click.option(
    "--similarity", type=click.Choice(["dot", "cosine"]), default=_gpl("similarity"), show_default=True
)
@click.option("--tsdae", is_flag=True, help="TSDAE pre-training on the target corpus first (TSDAE + GPL).")
@options.settings("Any other GPLConfig field, e.g. --set negatives_per_miner=20.")
@options.seed(_gpl("seed"))
@options.device()
@options.overwrite("Delete the run folder's GPL outputs and start afresh.")
@options.quiet()
def adapt_gpl(dataset, output, preset, student, backbone, generator, cross_encoder, miners, queries_file,
              queries_per_passage, num_passages, held_out_queries, steps, batch_size, learning_rate, similarity,
              tsdae, settings, seed, device, overwrite, quiet):  # fmt: skip
    """GPL (Wang et al. 2022): generate queries, mine negatives, pseudo-label with a cross-encoder, train with MarginMSE.

    Resumable: rerun the same command and finished stages are skipped.
    """
    from ..methods.gpl import run_gpl

    check_output_path(output, folder=True, what="--output")
    given = {
        "preset": preset, "student": student, "backbone": backbone, "generator": generator,
        "cross_encoder": cross_encoder, "miners": list(miners) or None, "queries_per_passage": queries_per_passage,
        "num_passages": num_passages, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
        "similarity": similarity, "tsdae": tsdae, "seed": seed, "device": device,
        "held_out_queries": held_out_queries,
    }  # fmt: skip
    _run_on_corpus(
        "GPL", GPLConfig, run_gpl, given, settings, dataset, output, queries_file, overwrite, quiet
    )


@adapt.command("qgen")
@options.dataset(
    required=True, help="Target corpus: a BEIR dataset name or folder (only corpus.jsonl is read)."
)
@options.output(
    folder=True, required=True, help="Run folder: the generated queries, then the trained retriever."
)
@_QGEN_BEFORE
@_QGEN_AFTER
@options.epochs(_qgen("epochs"))
@options.max_steps()
@options.batch_size(_qgen("batch_size"), minimum=2)
@options.learning_rate(help="Learning rate [default: 2e-5 for ft, the package default for the others].")
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default=_qgen("sampler"),
    show_default=True,
    help="shuffle: BEIR's script; no-duplicates: no passage twice in a batch.",
)
@options.settings("Any other QGenConfig field, e.g. --set max_seq_length=256.")
@options.seed(_qgen("seed"))
@options.device()
@options.overwrite("Delete the run folder's QGen outputs and start afresh.")
@options.quiet()
def adapt_qgen(dataset, output, preset, student, backbone, generator, queries_file, queries_per_passage,
               num_passages, held_out_queries, epochs, max_steps, batch_size, learning_rate, sampler, settings,
               seed, device, overwrite, quiet):  # fmt: skip
    """QGen (GPL's baseline): generated queries, in-batch negatives (MNRL), no pseudo labels.

    Shares GPL's generation stage and files; resumable like it.
    """
    from ..methods.gpl import run_qgen

    check_output_path(output, folder=True, what="--output")
    given = {
        "preset": preset, "student": student, "backbone": backbone, "generator": generator,
        "queries_per_passage": queries_per_passage, "num_passages": num_passages, "epochs": epochs,
        "max_steps": max_steps, "batch_size": batch_size, "learning_rate": learning_rate, "sampler": sampler,
        "seed": seed, "device": device, "held_out_queries": held_out_queries,
    }  # fmt: skip
    _run_on_corpus(
        "QGen", QGenConfig, run_qgen, given, settings, dataset, output, queries_file, overwrite, quiet
    )


def _run_on_corpus(name, config_class, run, given, settings, dataset, output, queries_file, overwrite, quiet):
    """GPL's and QGen's common end: the config from the options and ``--set``, the target corpus,
    the run, and where the saved retriever is."""
    from ..data import load_corpus, resolve_dataset

    fields = {**options.parse_settings(settings), **{k: v for k, v in given.items() if v is not None}}
    try:
        config = config_class(**fields)
    except TypeError as err:
        raise click.UsageError(f"--set: {err}") from None
    if quiet:
        quiet_libraries()
    folder = resolve_dataset(dataset)
    corpus = load_corpus(folder)
    echo(f"{name} on {folder.name}: {len(corpus)} passages -> {output}")
    result = run(
        corpus, output, config, queries_file=queries_file, dataset_name=folder.name, overwrite=overwrite,
        show_progress_bar=not quiet, echo=echo,
    )  # fmt: skip
    echo(f"saved {result}; evaluate with: beir-peft evaluate --model {result} --dataset {dataset}")


@adapt.command("art")
@options.dataset(required=True, help="BEIR dataset name or folder: its corpus is searched.")
@click.option(
    "--questions",
    required=True,
    help="A queries.jsonl file (_id, text per line), or a split of --dataset whose questions are used (its qrels are not).",
)
@options.output(folder=True, required=True, help="Run folder: checkpoints, then the trained retriever.")
@click.option(
    "--student",
    type=click.Choice(student_methods()),
    default=_art("student"),
    show_default=True,
    help="Two fully trained encoders (the paper), one deep prompt per side, or one LoRA per side.",
)
@click.option(
    "--backbone", default=None, help="Student backbone [default: all-MiniLM-L6-v2; the paper: BERT-base]."
)
@click.option(
    "--pooling",
    type=click.Choice(POOLING_MODES),
    default=None,
    help="[default: the backbone's own; the paper: cls].",
)
@click.option("--teacher", default=None, help="Frozen seq2seq teacher [default: bigscience/T0_3B].")
@click.option(
    "--top-k",
    default=_art("top_k"),
    show_default=True,
    type=click.IntRange(min=2),
    help="Passages per question.",
)
@click.option(
    "--refresh-every",
    default=_art("refresh_every"),
    show_default=True,
    type=click.IntRange(min=1),
    help="Steps between rebuilds of the passage embeddings.",
)
@options.epochs(_art("epochs"))
@options.max_steps()
@options.batch_size(_art("batch_size"))
@options.learning_rate(help="Learning rate [default: 2e-5 for ft, 1e-3 pt2-dpr, 5e-4 lora].")
@click.option(
    "--teacher-batch-size", default=_art("teacher_batch_size"), show_default=True, type=click.IntRange(min=1)
)
@options.held_out("questions", _art("held_out_questions"), "the teacher's choice as the answer")
@options.checkpoint_every(_art("checkpoint_every"))
@options.seed(_art("seed"))
@options.device()
@options.overwrite("Start afresh even if --output holds a run.")
@options.quiet()
def adapt_art(dataset, questions, output, student, backbone, pooling, teacher, top_k, refresh_every, epochs,
              max_steps, batch_size, learning_rate, teacher_batch_size, held_out_questions, checkpoint_every, seed,
              device, overwrite, quiet):  # fmt: skip
    """ART (Sachan et al. 2023): train a dual encoder from unpaired questions, a frozen LM scoring question reconstruction as teacher.

    Resumable: rerun the same command to continue from the newest checkpoint.
    """
    from ..data import resolve_dataset
    from ..encoders.backbone import DEFAULT_BACKBONE
    from ..methods.art import train_art

    config = ARTConfig(
        student=student, backbone=backbone or DEFAULT_BACKBONE, pooling=pooling, teacher=teacher or ARTConfig.teacher,
        top_k=top_k, refresh_every=refresh_every, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        learning_rate=learning_rate, teacher_batch_size=teacher_batch_size, checkpoint_every=checkpoint_every,
        seed=seed, device=device, held_out_questions=held_out_questions,
    )  # fmt: skip
    check_output_path(output, folder=True, what="--output")
    if quiet:
        quiet_libraries()
    folder = resolve_dataset(dataset)
    corpus, question_texts, source = _questions(folder, questions)
    echo(f"ART: {len(question_texts)} questions from {source}, {len(corpus)} passages -> {output}")
    result = train_art(question_texts, corpus, output, config, dataset_name=folder.name, overwrite=overwrite,
                       show_progress_bar=not quiet, echo=echo)  # fmt: skip
    echo(f"saved {result}; evaluate with: beir-peft evaluate --model {result} --dataset {dataset}")


def _questions(folder: Path, questions: str) -> tuple[dict, dict, str]:
    """The corpus, the questions and where they come from: a queries file, or a split of the dataset."""
    from ..data import load_corpus, load_dataset, load_queries

    if Path(questions).is_file():
        return load_corpus(folder), load_queries(questions), questions
    if Path(questions).suffix or "/" in questions:  # meant as a file
        raise click.BadParameter(f"no such questions file: {questions}", param_hint="--questions")
    data = load_dataset(folder, split=questions)
    return data.corpus, data.queries, f"{folder.name}/{questions} (qrels unused)"
