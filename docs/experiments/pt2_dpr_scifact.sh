#!/usr/bin/env bash
# The runs behind docs/results.md (PT2-DPR and its comparison variants on SciFact).
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/pt2_dpr_scifact.sh RUN_DIR
# Each model is trained on SciFact train with the same budget (3 epochs, batch 32) and evaluated on
# SciFact test and on the MS MARCO slice (msmarco-dl19-5k, the other domain). Finished steps are skipped.
set -euo pipefail
RUNS=${1:-runs}
mkdir -p "$RUNS"
source "$(dirname "$0")/runs.sh"
cd "$RUNS"


evaluate sentence-transformers/all-MiniLM-L6-v2 zero-shot
# (measured with the backbone's dropout on, the default until 2026-12-04; now --no-backbone-dropout is)
train pt2 pt2-dpr --lr 3e-3 --backbone-dropout          # gate, text init, 32 tokens, a larger step
train pt2-paper pt2-dpr --lr 1e-2 --set gate=false --set init=random --backbone-dropout   # the paper's recipe on this backbone
train pt2-lr1e-3 pt2-dpr --backbone-dropout             # the defaults (lr 1e-3) with the backbone's dropout
train pt2-nodrop pt2-dpr --no-backbone-dropout          # the defaults, frozen backbone in eval mode (today's default)
train ft ft
train bitfit bitfit
train lora lora
train adapter adapter                                   # the paper's Adapter baseline at its rate (3e-5)
train adapter-lr1e-3 adapter --lr 1e-3                  # the same at bitfit's rate on this backbone
train prompt prompt
