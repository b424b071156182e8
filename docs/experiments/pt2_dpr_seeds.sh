#!/usr/bin/env bash
# Three seeds of the backbone-dropout decision (issue: speed) and of the fine-tuning baseline:
# PT2-DPR at its defaults with the backbone's dropout on (the paper's setting) and off
# (--no-backbone-dropout), and full fine-tuning, each trained on SciFact train with the budget of
# pt2_dpr_scifact.sh (3 epochs, batch 32) and evaluated on SciFact test and the MS MARCO slice.
# Seed 42 is pt2_dpr_scifact.sh's run (pt2-lr1e-3, pt2-nodrop, ft); this script adds the others.
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/pt2_dpr_seeds.sh RUN_DIR [SEEDS...]
# Then: python docs/experiments/collect_seeds.py RUN_DIR docs/results/pt2_dpr [--json OUT]
set -euo pipefail
RUNS=${1:-runs}; shift || true
SEEDS=${*:-1 2}
mkdir -p "$RUNS"
source "$(dirname "$0")/runs.sh"
cd "$RUNS"


for seed in $SEEDS; do
  train "pt2-nodrop-s$seed" pt2-dpr --no-backbone-dropout --seed "$seed"
  train "pt2-lr1e-3-s$seed" pt2-dpr --backbone-dropout --seed "$seed"
  train "ft-s$seed" ft --seed "$seed"
done
