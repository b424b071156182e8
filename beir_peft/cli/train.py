"""``beir-peft train METHOD``: supervised training on a split's relevance pairs."""

from __future__ import annotations

from pathlib import Path

import click

from ..encoders.backbone import POOLING_MODES
from ..registry import LATE_INTERACTION, method_spec, methods
from ..training.config import MIXED_PRECISION, NEGATIVE_MINERS, PAIR_SOURCES, TrainingConfig
from ..training.presets import TRAIN_PRESETS
from . import options
from .common import echo, given, quiet_libraries

#: the methods ``train`` trains, in the table's order
TRAIN_METHODS = methods(trainable=True)


def _default(name: str):
    return options.config_default(TrainingConfig, name)


@click.command()
@click.argument("method", type=click.Choice(TRAIN_METHODS))
@options.dataset()
@click.option(
    "--preset",
    type=click.Choice(tuple(TRAIN_PRESETS)),
    default=None,
    help="pt2-dpr: paper = Tam et al. 2022 appendix B.1 (prefix 100, no gate, random init, cls pooling, "
    "lr 1e-2, batch 128, scale 1, one BM25 hard negative, 40 epochs); options given explicitly override it.",
)
@options.split("train", help="qrels split whose (query, relevant passage) pairs are trained on.")
@options.output(folder=True, required=True, help="Run folder; ends as a saved retriever.")
@click.option(
    "--backbone", default=None, help="Backbone model [default: sentence-transformers/all-MiniLM-L6-v2]."
)
@options.epochs(_default("epochs"))
@options.batch_size(_default("batch_size"), minimum=2)
@options.learning_rate(help="Learning rate [default: per method].")
@options.max_steps()
@click.option(
    "--pairs",
    "pair_source",
    type=click.Choice(PAIR_SOURCES),
    default=_default("pair_source"),
    show_default=True,
    help="Training pairs: the split's qrels, or cut from the corpus without labels for intermediate "
    "pre-training (title: title -> text; ict: a sentence -> its document).",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Start from this saved folder of the same method (e.g. a --pairs ict run) instead of an untrained model.",
)
@click.option(
    "--hard-negatives",
    default=None,
    type=click.IntRange(min=0),
    help="Hard negatives per query [default: 0; ColBERT methods and --preset paper: 1].",
)
@click.option(
    "--negatives",
    "negative_miner",
    type=click.Choice(NEGATIVE_MINERS),
    default=_default("negative_miner"),
    show_default=True,
    help="Who mines the hard negatives: the starting backbone (dense), BM25 (bm25s), or unified "
    "(DPTDR: both interleaved, false negatives guarded).",
)
@click.option(
    "--negatives-from",
    default=None,
    help="A saved folder (or model name) that mines instead of the backbone, e.g. a first round's model.",
)
@click.option(
    "--false-negative-margin",
    default=_default("false_negative_margin"),
    show_default=True,
    type=float,
    help="--negatives unified: drop candidates scored above the lowest positive's score minus this.",
)
@click.option(
    "--in-batch-negatives",
    is_flag=True,
    help="pt2-colbert, colbert-ft: also score the batch's other passages, besides the hard negatives.",
)
@click.option(
    "--scale",
    default=_default("scale"),
    show_default=True,
    type=options.POSITIVE_FLOAT,
    help="Loss similarity scale (1/temperature).",
)
@options.checkpoint_every(_default("checkpoint_every"), help="Steps between checkpoints.")
@options.seed(_default("seed"))
@click.option(
    "--prefix-length", default=None, type=click.IntRange(min=1), help="Prompt length (pt2-dpr, prompt)."
)
@click.option(
    "--pooling",
    type=click.Choice(POOLING_MODES),
    default=None,
    help="Pooling [default: the backbone's own].",
)
@options.settings("Any other model option, e.g. --set gate=false --set init=random.")
@options.resume("Continue the interrupted run in --output from its newest checkpoint.")
@click.option(
    "--backbone-dropout/--no-backbone-dropout",
    "backbone_dropout",
    default=None,
    help="Keep the backbone's own dropout while training (the papers' setting), or train it in eval mode "
    "(fused attention: ~3x faster, a third of the memory for prompt methods) [default: per method].",
)
@click.option(
    "--gradient-checkpointing",
    is_flag=True,
    help="Recompute the backbone's activations in the backward pass instead of keeping them: "
    "less memory per step, about a third more time.",
)
@click.option(
    "--mixed-precision",
    type=click.Choice(MIXED_PRECISION),
    default=_default("mixed_precision"),
    show_default=True,
    help="accelerate's mixed precision: bf16 on CPUs with AVX-512 BF16 or AMX and on GPUs, fp16 on GPUs; "
    "the weights stay float32.",
)
@options.overwrite("Start afresh even if --output holds a run.")
@options.quiet()
@click.pass_context
def train(ctx, method, dataset, preset, split, output, backbone, epochs, batch_size, learning_rate, max_steps,
          pair_source, init_from, hard_negatives, negative_miner, negatives_from, false_negative_margin,
          in_batch_negatives, scale, checkpoint_every, seed, prefix_length, pooling, settings, backbone_dropout,
          gradient_checkpointing, mixed_precision, resume, overwrite, quiet):  # fmt: skip
    """Train METHOD (pt2-dpr, prompt, bitfit, lora, adapter, ft, pt2-colbert or colbert-ft) on a split's relevance pairs."""
    from ..data import DEMO_DATASET, load_dataset
    from ..encoders.backbone import DEFAULT_BACKBONE
    from ..io import check_output_path
    from ..methods.supervised import train as run_training
    from ..models.loading import new_retriever
    from ..training.pairs import pair_run_folder

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    check_output_path(output, folder=True, what="--output")
    pair_run_folder(output).check(resume, overwrite)
    if quiet:
        quiet_libraries()
    late_interaction = method_spec(method).kind == LATE_INTERACTION
    if in_batch_negatives and not late_interaction:
        raise click.UsageError(
            "--in-batch-negatives: only for pt2-colbert and colbert-ft (dual encoders always use them)"
        )
    model_options, config = _settings(ctx, method, late_interaction)
    data = load_dataset(dataset or DEMO_DATASET, split=split)
    import torch

    torch.manual_seed(seed)  # a random prefix initialisation is part of the run
    if init_from is not None:
        retriever, start = _start_from(ctx, init_from, method, model_options)
    else:
        retriever, start = new_retriever(method, backbone or DEFAULT_BACKBONE, **model_options), None
    echo(f"{data.describe()} | {retriever.describe()}" + (f" | from {init_from}" if start else ""))
    folder = run_training(
        retriever, data, output, config, resume=resume, overwrite=overwrite, show_progress_bar=not quiet,
        init_from=start,
    )  # fmt: skip
    echo(
        f"saved {folder}; evaluate with: beir-peft evaluate --model {folder} --dataset {dataset or DEMO_DATASET}"
    )


def _start_from(ctx: click.Context, folder: Path, method: str, model_options: dict):
    """The retriever saved in ``folder`` (trained further by this run) and its record entry."""
    from ..models.loading import load

    given_model_options = [f"--{name.replace('_', '-')}" for name in ("backbone", "prefix_length", "pooling")
                           if given(ctx, name)] + (["--set"] if given(ctx, "settings") else [])  # fmt: skip
    if given_model_options or model_options:
        named = (
            ", ".join(given_model_options)
            or f"the preset's model options ({', '.join(sorted(model_options))})"
        )
        raise click.UsageError(f"--init-from takes the model as saved in {folder}; drop {named}")
    retriever = load(folder)
    if retriever.method != method:
        raise click.UsageError(f"--init-from {folder} holds a {retriever.method} model, not {method}")
    return retriever, {"path": str(folder.resolve()), "fingerprint": retriever.fingerprint()}


def _settings(ctx: click.Context, method: str, late_interaction: bool) -> tuple[dict, TrainingConfig]:
    """The model options and the TrainingConfig of the command line, the preset's values where the user
    gave none; one hard negative by default for ColBERT methods, and a miner only where there are hard
    negatives to mine."""
    params = ctx.params
    model = options.parse_settings(params["settings"])
    model.update({name: params[name] for name in ("prefix_length", "pooling") if params[name] is not None})
    names = ("epochs", "batch_size", "learning_rate", "max_steps", "hard_negatives", "negative_miner", "scale",
             "checkpoint_every", "seed", "mixed_precision", "gradient_checkpointing", "pair_source",
             "false_negative_margin")  # fmt: skip
    training = {name: params[name] for name in names}
    training["in_batch_negatives"] = True if params["in_batch_negatives"] else None
    training["backbone_dropout"] = params["backbone_dropout"]
    source = params["negatives_from"]
    training["negatives_from"] = str(Path(source).resolve()) if source and Path(source).is_dir() else source
    if params["preset"] is not None:
        model, training = _apply_preset(ctx, params["preset"], method, model, training)
    if training["hard_negatives"] is None:
        training["hard_negatives"] = int(late_interaction and training["pair_source"] == "qrels")
    if not training["hard_negatives"] and not given(ctx, "negative_miner"):
        training["negative_miner"] = "backbone"  # a preset's miner has nothing to mine
    if training["negative_miner"] != "backbone" and not training["hard_negatives"]:
        raise click.UsageError(f"--negatives {params['negative_miner']} needs --hard-negatives 1 or more")
    if training["negatives_from"] and not training["hard_negatives"]:
        raise click.UsageError("--negatives-from needs --hard-negatives 1 or more")
    return model, TrainingConfig(**training)


def _apply_preset(
    ctx: click.Context, name: str, method: str, model: dict, settings: dict
) -> tuple[dict, dict]:
    """Model options and TrainingConfig settings with the preset's values where the user gave none."""
    from ..training.presets import train_preset

    chosen = train_preset(name, method)
    settings = dict(settings)
    for key, value in chosen.training.items():
        if not given(ctx, key):  # every TrainingConfig field's option is named after it
            settings[key] = value
    return {**chosen.model, **model}, {**settings, "preset": name}
