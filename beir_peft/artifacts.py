"""Saved retriever folders: ``config.json`` + ``weights.safetensors`` + ``README.md``.

A folder holds only what was trained (a prefix, LoRA matrices, biases, or a whole backbone for
full fine-tuning) and a config naming the frozen backbone it sits on, so it reloads without the
code path that trained it (the idea of peft's adapter folders). Loading is strict: a missing
tensor, an extra one, a wrong shape, or a different backbone is an :class:`ArtifactError`, never
a silently random prefix (the trap in the PT-Retrieval code, which loads with ``strict=False``).

Only safetensors and JSON are read; nothing is unpickled. This module knows the folder format only;
:func:`beir_peft.load` (:mod:`beir_peft.models.loading`) rebuilds the retriever a folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ArtifactError
from .io import save_safetensors_atomic, write_json_atomic, write_text_atomic
from .versions import library_versions

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
#: config.json entries that describe the folder rather than the model
FOLDER_METADATA = ("format_version", "trainable_parameters", "total_parameters", "training", "versions")


def is_retriever_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def save_retriever(
    retriever, path: str | Path, training: dict[str, Any] | None = None, results: dict[str, Any] | None = None
) -> Path:
    """Write ``retriever`` to ``path``; returns the folder.

    Each file is written atomically and ``config.json`` last, so a folder that has a config is
    complete; other content of ``path`` (a training run's ``checkpoints/``) is left alone.
    ``training`` (hyper-parameters, data, time) and ``results`` (metrics) go into the config and
    the model card.
    """
    path = Path(path)
    config = {
        "format_version": FORMAT_VERSION,
        **retriever.config.to_dict(),
        "trainable_parameters": retriever.trainable_parameter_count(),
        "total_parameters": retriever.total_parameter_count(),
        "training": training or {},
        "versions": library_versions(),
    }
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"{path}: exists and is not a folder")
    (path / CONFIG_NAME).unlink(missing_ok=True)  # the folder is incomplete until the new config lands
    save_safetensors_atomic(
        retriever.trainable_state_dict(), path / WEIGHTS_NAME, metadata={"method": retriever.method}
    )
    write_text_atomic(path / CARD_NAME, model_card(config, results))
    write_json_atomic(path / CONFIG_NAME, config)
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such model folder")
    if not path.is_dir():
        raise ArtifactError(
            f"{path}: not a folder (a saved retriever is a folder with {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise ArtifactError(f"{path}: missing {CONFIG_NAME}; not a beir_peft retriever folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{config_path}: invalid JSON ({exc})") from exc
    if not isinstance(config, dict) or "method" not in config:
        raise ArtifactError(f"{config_path}: no 'method' field; not a beir_peft retriever config")
    version = config.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{config_path}: format_version {version} is newer than this beir_peft understands ({FORMAT_VERSION})"
        )
    return config


def read_weights(path: str | Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path = Path(path) / WEIGHTS_NAME
    if not weights_path.is_file():
        raise ArtifactError(f"{Path(path)}: missing {WEIGHTS_NAME}")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights_path}: unreadable safetensors file ({exc})") from exc


def model_card(config: dict[str, Any], results: dict[str, Any] | None = None) -> str:
    """A short Markdown card: what the folder is, how to load it, how it was trained."""
    method = config["method"]
    score = config.get("score_function")
    if score is None and config.get("similarity"):  # late interaction (PT2-ColBERT)
        score = f"MaxSim over {config['similarity']} token similarities"
    lines = [
        f"# beir_peft retriever: {method}",
        "",
        f"- backbone: `{config.get('backbone')}` (frozen unless the method is `ft` or `colbert-ft`)",
        f"- trainable parameters: {config.get('trainable_parameters', 0):,} of {config.get('total_parameters', 0):,}",
        f"- score function: {score}",
        "",
        "```python",
        "import beir_peft",
        "retriever = beir_peft.load('path/to/this/folder')",
        "```",
        "",
        "or `beir-peft evaluate --model path/to/this/folder --dataset scifact`.",
    ]
    training = config.get("training") or {}
    if training:
        lines += ["", "## Training", ""] + [
            f"- {k}: {v}" for k, v in training.items() if not isinstance(v, (dict, list))
        ]
    if results:
        lines += ["", "## Results", ""] + [f"- {k}: {v}" for k, v in results.items()]
    lines += ["", f"Written by beir_peft {config.get('versions', {}).get('beir_peft', '')}.", ""]
    return "\n".join(lines)
