"""DDR as a BEIR dense model: a relevance module (REM) on a domain adaption module (DAM).

Zhan et al. 2022 (seed 004): serve the target domain's DAM (a backbone adapted by MLM) with the
relevance module trained once on the source DAM, LoRA merged into the weights (no inference
overhead), mean pooling, inner product. See :mod:`beir_peft.methods.ddr` for the training stages.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..artifacts import FOLDER_METADATA, read_config, read_weights
from ..encoders.backbone import DEFAULT_BACKBONE, backbone_reference
from ..errors import ArtifactError
from .configs import TunedConfig
from .tuned import TunedRetriever, tuned_config


class DDR(TunedRetriever):
    """A DDR retriever.

    ``DDR(dam)`` is an untrained REM (LoRA r=192 on query/value + parallel adapters, bottleneck 192)
    on the frozen backbone or DAM ``dam``: what the REM stage trains. ``DDR(dam, rem=folder)`` puts
    the trained REM of ``folder`` on ``dam`` (the target domain's DAM) and, with ``merge=True``,
    folds LoRA into the weights: the served model.

    Example::

        from beir_peft import DDR
        model = DDR("runs/dam-msmarco", rem="runs/rem-scifact")
    """

    def __init__(
        self,
        dam: str | os.PathLike = DEFAULT_BACKBONE,
        rem: str | os.PathLike | None = None,
        *,
        merge: bool = True,
        config: TunedConfig | None = None,
        **options,
    ):
        if config is None and rem is not None:
            saved = read_config(rem)
            if saved.get("method") != "ddr":
                raise ArtifactError(f"{rem}: a {saved.get('method')!r} folder, not a DDR relevance module")
            fields = {k: v for k, v in saved.items() if k not in FOLDER_METADATA}
            config = TunedConfig.from_dict(fields, where=str(Path(rem) / "config.json"))
            config = dataclasses.replace(
                config, backbone=backbone_reference(dam), backbone_fingerprint=None, merge_lora=False
            )
        elif config is None:
            config = tuned_config("ddr", str(dam), {"pooling": "mean", **options})
        super().__init__(config)
        if rem is not None:
            self.load_trainable_state_dict(read_weights(rem), where=f"{rem} on {dam}")
            if merge:
                self.merge_lora()
                self.config.merge_lora = True
