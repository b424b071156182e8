"""``beir-peft ddr dam | rem | assemble``: DDR's stages (Zhan et al. 2022)."""

from __future__ import annotations

from pathlib import Path

import click

from ..io import check_output_path
from ..methods.ddr import DAMConfig
from ..training.config import TrainingConfig
from . import options
from .common import echo, quiet_libraries


def _dam(name: str):
    return options.config_default(DAMConfig, name)


def _training(name: str):
    return options.config_default(TrainingConfig, name)


@click.group()
def ddr():
    """DDR (Zhan et al. 2022): domain modules by MLM, one relevance module, assembled per domain."""


@ddr.command("dam")
@click.option(
    "--corpus", "-d", required=True, help="BEIR dataset name or folder whose corpus.jsonl is the MLM text."
)
@click.option(
    "--init",
    "init",
    default=None,
    help="Backbone or DAM folder to start from [default: all-MiniLM-L6-v2]; a target DAM starts from the source DAM.",
)
@options.output(folder=True, required=True)
@click.option("--steps", default=_dam("steps"), show_default=True, type=click.IntRange(min=1))
@options.batch_size(_dam("batch_size"))
@options.learning_rate(default=_dam("learning_rate"))
@click.option("--max-seq-length", type=click.IntRange(min=8), help="[default: the backbone's own]")
@options.held_out("passages", _dam("held_out_passages"), "masked-token accuracy")
@options.checkpoint_every(_dam("checkpoint_every"))
@options.seed(_dam("seed"))
@options.device(help=None)
@options.quiet(help=None)
def ddr_dam(corpus, init, output, steps, batch_size, learning_rate, max_seq_length, held_out_passages,
            checkpoint_every, seed, device, quiet):  # fmt: skip
    """Train a domain adaption module: the whole backbone by masked language modelling on a corpus."""
    from ..data import load_corpus, passage_text, resolve_dataset
    from ..encoders.backbone import DEFAULT_BACKBONE
    from ..methods.ddr import train_dam

    check_output_path(output, folder=True, what="--output")
    config = DAMConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate, max_seq_length=max_seq_length,
                       checkpoint_every=checkpoint_every, seed=seed, device=device,
                       held_out_passages=held_out_passages)  # fmt: skip
    if quiet:
        quiet_libraries()
    folder = resolve_dataset(corpus)
    texts = [passage_text(doc) for doc in load_corpus(folder).values()]
    init = init or DEFAULT_BACKBONE
    echo(f"DAM: MLM on {folder.name} ({len(texts)} passages) from {init} -> {output}")
    train_dam(init, texts, output, config, corpus_name=folder.name, show_progress_bar=not quiet, echo=echo)
    echo(f"saved {output}")


@ddr.command("rem")
@options.dataset(required=True, help="Source dataset with relevance judgements.")
@options.split("train")
@click.option("--dam", required=True, help="The source DAM (frozen while the REM trains).")
@options.output(folder=True, required=True)
@options.epochs(_training("epochs"))
@options.max_steps()
@options.batch_size(_training("batch_size"), minimum=2)
@options.learning_rate(help="[default: 2e-5, the paper]")
@click.option(
    "--hard-negatives", default=1, show_default=True, type=click.IntRange(min=0), help="Mined by the DAM."
)
@click.option(
    "--margins",
    "margins_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Train by MarginMSE on these teacher margins (qid, pos, neg, margin TSV) instead.",
)
@click.option("--no-lora", is_flag=True, help="REM without LoRA (the paper's Table 5: adapter only).")
@click.option("--no-adapter", is_flag=True, help="REM without the parallel adapter (Table 5: LoRA only).")
@options.settings("Other REM options, e.g. --set rem_lora_r=64.")
@options.seed(_training("seed"))
@options.resume()
@options.overwrite()
@options.quiet(help=None)
def ddr_rem(dataset, split, dam, output, epochs, max_steps, batch_size, learning_rate, hard_negatives, margins_file,
            no_lora, no_adapter, settings, seed, resume, overwrite, quiet):  # fmt: skip
    """Train the relevance module (LoRA + parallel adapters) on a frozen source DAM; contrastive with hard negatives."""
    from ..data import load_dataset
    from ..methods.ddr import train_rem

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    check_output_path(output, folder=True, what="--output")
    rem_options = {**options.parse_settings(settings), "rem_lora": not no_lora, "rem_adapter": not no_adapter}
    config = TrainingConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
                            hard_negatives=0 if margins_file else hard_negatives, seed=seed)  # fmt: skip
    if quiet:
        quiet_libraries()
    data = load_dataset(dataset, split=split)
    echo(f"REM on {dam}: {data.describe()}")
    folder = train_rem(dam, data, output, config, margins_file=margins_file, resume=resume, overwrite=overwrite,
                       show_progress_bar=not quiet, **rem_options)  # fmt: skip
    echo(
        f"saved {folder}; put it on a target DAM with: beir-peft ddr assemble --dam DAM --rem {folder} -o DIR"
    )


@ddr.command("assemble")
@click.option(
    "--dam", required=True, help="The target domain's DAM (or any backbone of the REM's architecture)."
)
@click.option(
    "--rem",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A REM folder from `ddr rem`.",
)
@options.output(folder=True, required=True)
def ddr_assemble(dam, rem, output):
    """Put a trained REM on a target DAM: a retriever folder that `beir-peft evaluate` accepts (LoRA merged when loaded)."""
    from ..methods.ddr import assemble

    check_output_path(output, folder=True, what="--output")
    folder = assemble(dam, rem, output)
    echo(f"saved {folder}; evaluate with: beir-peft evaluate --model {folder} --dataset TARGET")
