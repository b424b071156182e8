"""The DAM's adaptation check (issue 17, item 3): held-out passages, masked-token accuracy.

DDR's target stage (Zhan et al. 2022, seed 004, section 3.3) adapts the backbone to a target corpus
by masked language modelling, with no queries at all: its own training signal is the corpus' masked
tokens. So a DAM run keeps ``DAMConfig.held_out_passages`` of its texts (default 200, at most a
tenth, drawn with the run's seed) out of training and masks them once, by the run's own rule (15% of
the tokens selected, 80/10/10), from a generator seeded by the run's seed. When training ends, the
start model (``init`` with its MLM head: a target DAM starts from the source DAM and its trained
head; a plain backbone gets the same fresh head, tied to its embeddings, that training started
from) and the trained DAM predict the selected tokens. ``dam.json`` keeps both accuracies (and
both mean losses) under ``adaptation_check``, with a one-line warning when the trained DAM is not
better (the record and the line are those of :mod:`beir_peft.training.adaptation_check`).

What it can see: a learning rate that wrecks the encoder, a budget too small to move it, a corpus
that teaches nothing new. What it cannot: whether the REM retrieves better on the new DAM (no
queries exist at this stage; DDR's answer is the target task's own evaluation). A first DAM from a
backbone without an MLM head starts from an untrained head and so passes easily; the check is
sharpest where the paper uses it, a target DAM from the source DAM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...io import write_json_atomic
from ...training.adaptation_check import CHECK_KEY, say, summary

#: what the check compares (higher is better)
METRIC = "masked-token accuracy"
SIGNAL = "held-out passages of the corpus, their tokens masked once as in training"


def masked_batches(collator, encoded: Sequence[Sequence[int]], batch_size: int, seed: int) -> list[dict]:
    """``encoded`` (token ids per text) masked once by ``collator``, ``batch_size`` texts per batch,
    the masks drawn from ``seed`` (the same for every model scored on them)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [
            collator([{"input_ids": ids} for ids in encoded[start : start + batch_size]])
            for start in range(0, len(encoded), batch_size)
        ]


@torch.no_grad()
def masked_token_scores(mlm, batches: Sequence[dict], device) -> dict[str, float]:
    """``{"accuracy", "loss"}`` of ``mlm`` on the selected tokens of ``batches``: the share whose
    original token is its top prediction, and the mean cross-entropy (the training loss)."""
    mlm.eval()
    right = total = 0
    loss = 0.0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        logits = mlm(**batch).logits.float()
        selected = labels != -100
        right += int((logits.argmax(-1)[selected] == labels[selected]).sum())
        total += int(selected.sum())
        loss += float(torch.nn.functional.cross_entropy(logits[selected], labels[selected], reduction="sum"))
    return {"accuracy": right / max(total, 1), "loss": loss / max(total, 1), "tokens": total}


def check_dam(
    record_path: Path,
    held_out: int,
    measure: Callable[[], tuple[dict[str, float], dict[str, float]]],
    *,
    start_name: str,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Score and record the check of a finished DAM whose record is ``record_path`` (its dam.json)
    once (a recorded check is read back) and say its line
    (:func:`beir_peft.training.adaptation_check.say`); ``None`` when nothing was held out.
    ``measure()`` returns the start's and the trained DAM's :func:`masked_token_scores`."""
    if not held_out:
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    check = record.get(CHECK_KEY)
    if check is None:
        start, trained = measure()
        check = {
            "signal": SIGNAL,
            "held_out_passages": held_out,
            "masked_tokens": start["tokens"],
            "metric": METRIC,
            "start_model": start_name,
            "start": round(start["accuracy"], 5),
            "adapted": round(trained["accuracy"], 5),
            "gain": round(trained["accuracy"] - start["accuracy"], 5),
            "better": trained["accuracy"] > start["accuracy"],
            "start_loss": round(start["loss"], 5),
            "adapted_loss": round(trained["loss"], 5),
            "advice": "check the learning rate and the budget before using it",
        }
        write_json_atomic(record_path, {**record, CHECK_KEY: check})
    say(echo, summary(check), warns=not check["better"])
    return check


__all__ = ["METRIC", "check_dam", "masked_batches", "masked_token_scores"]
