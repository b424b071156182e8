"""The method table: every method list and ``--help`` choice is derived from it, each retriever class
declares the kind of its rows, and ``build_retriever`` / ``load`` agree on the class."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import click
import pytest
from tiny_models import build_tiny_bert

import beir_peft
from beir_peft import registry
from beir_peft.cli import cli
from beir_peft.registry import (
    COLBERT,
    DDR,
    DENSE,
    LATE_INTERACTION,
    METHOD_TABLE,
    SEARCHER,
    SINGLE_VECTOR,
    method_spec,
    methods,
    retriever_kind,
    student_methods,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny")))


def _choices(*path: str, param: str) -> tuple[str, ...]:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    option = next(p for p in command.params if p.name == param)
    return tuple(option.type.choices)


# ------------------------------------------------------------------------------------- the lists
def test_every_method_list_is_derived_from_the_table():
    from beir_peft.encoders.sharing import SERVED_LORA, SHAREABLE_METHODS
    from beir_peft.methods.art.training import STUDENTS as ART_STUDENTS
    from beir_peft.methods.gpl.pipeline import STUDENTS as GPL_STUDENTS
    from beir_peft.models.colbert import COLBERT_METHODS
    from beir_peft.models.tuned import METHODS, PROMPT_METHODS
    from beir_peft.serving import SERVABLE_METHODS

    assert (
        METHODS
        == methods(family=(DENSE, DDR))
        == ("pt2-dpr", "prompt", "bitfit", "lora", "adapter", "ft", "ddr")
    )
    assert PROMPT_METHODS == methods(family=(DENSE, DDR), prompt=True) == ("pt2-dpr", "prompt")
    assert COLBERT_METHODS == methods(family=COLBERT) == ("pt2-colbert", "colbert-ft")
    assert SHAREABLE_METHODS == (*methods(shareable=True), SERVED_LORA)
    assert SERVABLE_METHODS == {
        "pt2-dpr": SINGLE_VECTOR,
        "lora": SINGLE_VECTOR,
        "pt2-colbert": LATE_INTERACTION,
    }
    assert GPL_STUDENTS == ART_STUDENTS == student_methods() == ("ft", "pt2-dpr", "lora")
    assert {spec.name for spec in METHOD_TABLE} == {*METHODS, *COLBERT_METHODS}


def test_every_help_choice_is_derived():
    from beir_peft.analysis.calibration import DEFINITIONS, LAYOUTS
    from beir_peft.methods.gpl import PRESETS
    from beir_peft.methods.train_presets import TRAIN_PRESETS
    from beir_peft.search import SEARCH_CHOICES, SINGLE_VECTOR_SEARCHES

    train_methods = methods(trainable=True)
    assert train_methods == (
        "pt2-dpr",
        "prompt",
        "bitfit",
        "lora",
        "adapter",
        "ft",
        "pt2-colbert",
        "colbert-ft",
    )
    train = cli.commands["train"]
    assert tuple(next(p for p in train.params if p.name == "method").type.choices) == train_methods
    assert _choices("train", param="preset") == tuple(TRAIN_PRESETS)
    assert (
        _choices("adapt", "gpl", param="student")
        == _choices("adapt", "qgen", param="student")
        == _choices("adapt", "art", param="student")
        == student_methods()
    )
    assert (
        _choices("adapt", "gpl", param="preset")
        == _choices("adapt", "qgen", param="preset")
        == tuple(sorted(PRESETS))
    )
    assert _choices("evaluate", param="search") == SEARCH_CHOICES
    assert _choices("compare", param="search") == SINGLE_VECTOR_SEARCHES
    assert _choices("analyze", "calibration", param="definition") == DEFINITIONS
    assert _choices("analyze", "calibration", param="layout") == LAYOUTS


def test_help_defaults_are_the_configs():
    from beir_peft.analysis.compare import CompareConfig
    from beir_peft.methods.art import ARTConfig
    from beir_peft.methods.ddr import DAMConfig
    from beir_peft.methods.gpl import GPLConfig, QGenConfig
    from beir_peft.methods.supervised import TrainingConfig

    def default(*path: str, param: str):
        command: click.Command = cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        return next(p for p in command.params if p.name == param).default

    for name in ("epochs", "batch_size", "scale", "checkpoint_every", "seed", "negative_miner"):
        assert default("train", param=name) == getattr(TrainingConfig(), name), name
    for name in (
        "top_k",
        "refresh_every",
        "epochs",
        "batch_size",
        "teacher_batch_size",
        "checkpoint_every",
        "seed",
        "held_out_questions",
    ):
        assert default("adapt", "art", param=name) == getattr(ARTConfig(), name), name
    for name in ("preset", "student", "batch_size", "similarity", "seed"):
        assert default("adapt", "gpl", param=name) == getattr(GPLConfig(), name), name
    for name in ("preset", "student", "epochs", "batch_size", "sampler", "seed"):
        assert default("adapt", "qgen", param=name) == getattr(QGenConfig(), name), name
    for name in ("steps", "batch_size", "learning_rate", "checkpoint_every", "seed", "held_out_passages"):
        assert default("ddr", "dam", param=name) == getattr(DAMConfig(), name), name
    assert (
        str(CompareConfig.batch_size)
        in next(p for p in cli.commands["compare"].params if p.name == "batch_size").help
    )


def test_methods_filters_by_family_and_role_and_refuses_unknown_ones():
    assert methods(servable=True) == ("pt2-dpr", "lora", "pt2-colbert")
    assert methods(family=DDR) == ("ddr",)
    assert methods(family=COLBERT, prompt=True) == ("pt2-colbert",)
    with pytest.raises(TypeError, match="servabel"):
        methods(servabel=True)
    with pytest.raises(beir_peft.errors.ConfigError, match="unknown method 'dpr'"):
        method_spec("dpr")


# ------------------------------------------------------------------------------------- kinds
def test_every_retriever_class_declares_the_kind_of_its_rows():
    for spec in METHOD_TABLE:
        assert spec.retriever_class().retriever_kind == spec.kind == registry.FAMILY_KINDS[spec.family], (
            spec.name
        )
    from beir_peft.search.bm25 import BM25Search

    assert retriever_kind(BM25Search()) == SEARCHER


def test_retriever_kind_of_a_model_that_declares_none():
    class Dense:
        def encode_queries(self, queries, **kwargs): ...

    class Searcher:
        def search(self, corpus, queries, top_k, **kwargs): ...

    assert retriever_kind(Dense()) == SINGLE_VECTOR
    assert retriever_kind(Searcher()) == SEARCHER


# ------------------------------------------------------------------------------------- build / load
@pytest.mark.parametrize("method", methods(family=(DENSE, DDR)))
def test_build_retriever_and_load_return_the_same_class(tiny, tmp_path, method):
    built = beir_peft.build_retriever(method, tiny)
    assert type(built) is method_spec(method).retriever_class()
    built.save(tmp_path / method)
    assert type(beir_peft.load(tmp_path / method)) is type(built)


def test_ddr_is_built_and_loaded_as_ddr(tiny, tmp_path):
    built = beir_peft.build_retriever("ddr", tiny)
    assert type(built) is beir_peft.DDR
    built.save(tmp_path / "rem")
    assert type(beir_peft.load(tmp_path / "rem")) is beir_peft.DDR


def test_late_interaction_folders_load_as_pt2colbert(tiny, tmp_path):
    from beir_peft.models.loading import new_retriever

    for method in methods(family=COLBERT):
        built = new_retriever(method, tiny)
        assert type(built) is beir_peft.PT2ColBERT and built.method == method
        built.save(tmp_path / method)
        loaded = beir_peft.load(tmp_path / method)
        assert type(loaded) is beir_peft.PT2ColBERT and loaded.method == method


def test_the_folder_format_does_not_import_the_models():
    """``artifacts`` is below ``models``: it neither imports them nor holds loaders they register."""
    import ast
    from pathlib import Path

    import beir_peft.artifacts as artifacts

    tree = ast.parse(Path(artifacts.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level
        for alias in node.names
    }
    assert "models" not in imported and not any(name.startswith("models") for name in imported)
    assert not hasattr(artifacts, "register_loader")
