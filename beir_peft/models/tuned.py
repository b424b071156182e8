"""Dual-encoder retrievers that differ only in *which* parameters are trained.

Tam et al. 2022 (seed 000), section 4.2 and Table 1 compare, on one backbone and one training
recipe: full fine-tuning (``ft``), P-Tuning v2 deep prompts (``pt2-dpr``), input-layer prompt
tuning (``prompt``, Lester et al. 2021), BitFit (``bitfit``, Zaken et al. 2022), sequential
bottleneck adapters (``adapter``, Pfeiffer et al. 2020) and, here, LoRA (``lora``, Hu et al.
2021, through peft). :class:`TunedRetriever` builds any of them around one
frozen sentence-transformers backbone; :class:`PT2DPR` is the paper's method with its options.

Prompt methods keep separate query and passage prompts over the *same* frozen backbone (the
authors' DPR code); weight methods (``ft``, ``bitfit``, ``lora``, ``adapter``) tune one shared (siamese)
encoder, as sentence-transformers models are trained, or, with ``separate_encoders=True``, two
copies of the backbone, one per side (DPR's and ART's dual encoder). Prompt retrievers can also
share one backbone in memory with each other (``backbone_model=``; see :class:`TunedRetriever`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..encoders.backbone import (
    DEFAULT_BACKBONE,
    backbone_reference,
    hf_model,
    load_backbone,
    pooling_mode,
    retriever_pipeline,
    set_normalize,
    set_pooling,
)
from ..encoders.deep_prompt import DeepPromptHost, new_deep_prompts
from ..encoders.input_prompt import InputPromptHost
from ..encoders.lora import inject_lora, merge_lora
from ..encoders.sharing import check_backbone_shareable, register_backbone_user
from ..registry import DDR, DENSE, method_spec, methods
from .base import PASSAGE, QUERY, SIDES, DenseRetriever
from .configs import TunedConfig, WeightTuningConfig, config_from_options
from .trainable import TrainableStateMixin

logger = logging.getLogger(__name__)

#: the methods a TunedConfig builds (single-vector and DDR rows of the method table)
METHODS = methods(family=(DENSE, DDR))
PROMPT_METHODS = methods(family=(DENSE, DDR), prompt=True)
SHARED = "shared"


class TunedRetriever(TrainableStateMixin, DenseRetriever):
    """A frozen backbone plus the trained part named by ``config.method``.

    ``retriever.module`` is the ``nn.Module`` that owns every trainable parameter (hand it to an
    optimizer or to ``accelerate``); ``retriever.trainable_state_dict()`` is exactly what a saved
    folder stores.

    ``backbone_model``: a sentence-transformers pipeline already in memory to build on (default:
    load ``config.backbone``). Several prompt retrievers (``pt2-dpr``, ``prompt``, and
    ``PT2ColBERT``) can share one; each encodes exactly as it would alone. ``retriever.model`` is
    the retriever's own pipeline (:func:`~beir_peft.encoders.backbone.retriever_pipeline`): the
    backbone's ``Transformer`` module shared, its own pooling and final ``Normalize``
    (``config.pooling``, ``config.normalize``); ``config.max_seq_length`` is applied per call. The
    prompts take turns through the backbone's one prompt host. Weight methods (``ft``, ``bitfit``,
    ``lora``, ``adapter``, ``ddr``) change the backbone itself, so they refuse a backbone another retriever uses
    and vice versa (:class:`ConfigError`; see :mod:`beir_peft.encoders.sharing`).
    """

    def __init__(self, config: TunedConfig, backbone_model=None):
        backbone = backbone_model if backbone_model is not None else load_backbone(config.backbone)
        check_backbone_shareable(hf_model(backbone), config.method)
        # the retriever's own pipeline over the (possibly shared) backbone: its pooling and
        # normalisation never reach backbone_model or another retriever built on it
        model = retriever_pipeline(backbone)
        set_pooling(model, config.pooling)
        set_normalize(model, config.normalize)
        super().__init__(model, score_function=config.score_function, max_seq_length=config.max_seq_length)
        self.config = config
        self.method = config.method
        config.pin_backbone(model)
        self.prompts = nn.ModuleDict()
        self._host: DeepPromptHost | InputPromptHost | None = None
        # the passage side's own copy of the backbone, made before anything is attached to it
        separate = isinstance(config, WeightTuningConfig) and config.separate_encoders
        self.passage_model = copy.deepcopy(model) if separate else None
        for pipeline in (model, self.passage_model):
            if pipeline is None:
                continue
            for parameter in pipeline.parameters():
                parameter.requires_grad_(False)
            getattr(self, f"_build_{config.method.replace('-', '_')}")(pipeline)
            register_backbone_user(hf_model(pipeline), config.method)
        self.module = _RetrieverModule(self)

    # ------------------------------------------------------------------ construction per method
    def _prompt_sides(self) -> tuple[str, ...]:
        return (SHARED,) if self.config.share_prompts else SIDES

    def _build_pt2_dpr(self, _pipeline) -> None:
        cfg = self.config
        self._host = DeepPromptHost.of(hf_model(self.model), shift_positions=cfg.shift_positions)
        sides = self._prompt_sides()
        prompts = new_deep_prompts(self._host, len(sides), self.model.tokenizer, **cfg.deep_prompt_options())
        for side, prompt in zip(sides, prompts, strict=True):
            self.prompts[side] = prompt.to(self.device)

    def _build_prompt(self, _pipeline) -> None:
        self._host = InputPromptHost.of(self.model[0], hf_model(self.model))
        for side in self._prompt_sides():
            self.prompts[side] = self._host.new_prompt(self.config.prefix_length).to(self.device)

    def _build_bitfit(self, pipeline) -> None:
        for name, parameter in _used_parameters(hf_model(pipeline)):
            if name.endswith(".bias"):
                parameter.requires_grad_(True)

    def _build_ft(self, pipeline) -> None:
        for _, parameter in _used_parameters(hf_model(pipeline)):
            parameter.requires_grad_(True)

    def _build_lora(self, pipeline) -> None:
        cfg = self.config
        inject_lora(
            hf_model(pipeline),
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            targets=cfg.lora_targets,
        )
        for name, parameter in hf_model(pipeline).named_parameters():
            parameter.requires_grad_("lora_" in name)

    def _build_adapter(self, pipeline) -> None:
        """The PT2 paper's Adapter baseline (seed 000, section 4.2): a sequential bottleneck
        adapter after every feed-forward block, over the frozen backbone."""
        from ..encoders.sequential_adapter import add_sequential_adapters

        model = hf_model(pipeline)
        add_sequential_adapters(model, self.config.adapter_reduction_factor, self.config.adapter_init)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_("sequential_adapter." in name)

    def _build_ddr(self, pipeline) -> None:
        """DDR's REM (seed 004, section 3.2): LoRA on attention query/value and a parallel adapter
        beside every feed-forward block, over a frozen backbone (a DAM)."""
        from ..encoders.parallel_adapter import add_parallel_adapters

        cfg = self.config
        model = hf_model(pipeline)
        if cfg.rem_lora:
            inject_lora(
                model,
                r=cfg.rem_lora_r,
                alpha=cfg.rem_lora_alpha,
                dropout=cfg.lora_dropout,
                targets=cfg.lora_targets,
            )
        if cfg.rem_adapter:
            add_parallel_adapters(model, cfg.adapter_bottleneck, cfg.adapter_scaling)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_("lora_" in name or "parallel_adapter." in name)

    def merge_lora(self) -> None:
        """Fold every LoRA update into its base weight and drop the LoRA layers (zero inference overhead).

        Afterwards the LoRA tensors are no longer trainable parameters; only merge a model that is
        done training (``beir-peft ddr assemble`` sets ``merge_lora`` so the loader does this).
        """
        for pipeline in (self.model, self.passage_model):
            if pipeline is not None:
                merge_lora(hf_model(pipeline))

    # ------------------------------------------------------------------ encoding
    def pipeline(self, side: str):
        """The passage side's own backbone with ``separate_encoders``, else the shared one."""
        return self.passage_model if side == PASSAGE and self.passage_model is not None else self.model

    @contextlib.contextmanager
    def encoding_side(self, side: str) -> Iterator[None]:
        if self._host is None:
            yield
            return
        prompt = self.prompts[SHARED if self.config.share_prompts else side]
        with self._host.use(prompt):
            yield

    # ------------------------------------------------------------------ description
    def fingerprint_settings(self) -> dict[str, Any]:
        """The pipeline's settings and every config field (see :mod:`beir_peft.models.fingerprint`)."""
        return {**super().fingerprint_settings(), "config": self.config.to_dict()}


def _used_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The encoder's parameters minus BERT's ``pooler`` head, which sentence-transformers' pooling never uses."""
    for name, parameter in model.named_parameters():
        if not name.startswith("pooler."):
            yield name, parameter


class _RetrieverModule(nn.Module):
    """The retriever as one ``nn.Module``: ``forward(features, side) -> (batch, dim)`` embeddings.

    Training goes through this module so that the optimizer and ``accelerate`` see every trainable
    parameter: the backbone's and the prompts'.
    """

    def __init__(self, retriever: TunedRetriever):
        super().__init__()
        self.backbone = retriever.model
        if retriever.passage_model is not None:
            self.passage_backbone = retriever.passage_model
        self.prompts = retriever.prompts
        self._retriever = [retriever]  # a list, so nn.Module does not register a cycle

    def forward(self, features: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        return self._retriever[0].embed(features, side)


class PT2DPR(TunedRetriever):
    """P-Tuning v2 dense passage retriever (Tam et al. 2022, section 4.2; appendix B.1).

    Deep prompts (trainable key/value prefixes on every layer) over a frozen backbone; separate
    query and passage prefixes by default; dot-product score; pooling ``cls`` or ``mean``
    (default: the backbone's own). ``PT2DPR()`` builds an untrained model on
    ``sentence-transformers/all-MiniLM-L6-v2`` (the installed offline copy when there is one).

    The paper's model options (prefix 100, no gate, random init, ``cls`` pooling, 256 tokens) are
    ``PT2DPR("bert-base-uncased", **train_preset("paper", "pt2-dpr").model)``
    (:mod:`beir_peft.training.presets`); its *training* settings (lr 1e-2, batch 128, scale 1,
    one hard negative, 40 epochs) are ``TrainingConfig.from_preset("paper")``, and
    ``beir-peft train pt2-dpr --preset paper`` sets both. The defaults here are the recipe that
    works on a strong pretrained retriever, with the evidence in docs/results.md.

    Example::

        from beir.retrieval.evaluation import EvaluateRetrieval
        from beir.retrieval.search.dense import DenseRetrievalExactSearch as DRES
        from beir_peft import PT2DPR

        model = PT2DPR()
        retriever = EvaluateRetrieval(DRES(model, batch_size=64), score_function="dot")
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        config: TunedConfig | None = None,
        backbone_model=None,
        **options,
    ):
        if config is None:
            config = tuned_config("pt2-dpr", backbone, options)
        super().__init__(config, backbone_model)


def tuned_config(method: str, backbone: str, options: dict[str, Any]) -> TunedConfig:
    """The config of ``method`` on ``backbone`` with constructor keywords ``options`` (see
    :func:`~beir_peft.models.configs.config_from_options`)."""
    return config_from_options(
        TunedConfig, method, options, method=method, backbone=backbone_reference(backbone)
    )


def build_retriever(method: str, backbone: str = DEFAULT_BACKBONE, **options) -> TunedRetriever:
    """Any of :data:`METHODS` on ``backbone``; unknown options raise :class:`ConfigError`."""
    config = tuned_config(method, backbone, options)
    return method_spec(method).retriever_class()(config=config)  # the class ``load`` returns


__all__ = [
    "METHODS",
    "PASSAGE",
    "PROMPT_METHODS",
    "PT2DPR",
    "QUERY",
    "TunedConfig",
    "TunedRetriever",
    "build_retriever",
    "pooling_mode",
]
