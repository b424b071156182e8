#!/usr/bin/env bash
# DPTDR's intermediate pre-training for PT2-DPR on SciFact (issue: quality, lever 2): the prompts are
# first trained on label-free pairs cut from SciFact's corpus (one epoch of `--pairs ict`, the
# Inverse Cloze Task, or `--pairs title`, title -> abstract), then on SciFact train's labelled pairs
# with the budget of pt2_dpr_scifact.sh (3 epochs, batch 32), starting from the pre-trained folder.
# Every model, the pre-trained ones too, is evaluated on SciFact test and the MS MARCO slice.
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/pt2_dpr_levers.sh RUN_DIR SEED [train options...]
# The levers-off reference is pt2_dpr_scifact.sh / pt2_dpr_seeds.sh's run with the same seed and options.
set -euo pipefail
RUNS=${1:-runs}; SEED=${2:-42}; shift 2 || true
TRAIN_OPTIONS=(--seed "$SEED" "$@")
mkdir -p "$RUNS"
source "$(dirname "$0")/runs.sh"
cd "$RUNS"

for source in ict title; do
  train "$source-pre-s$SEED" pt2-dpr --pairs "$source" --epochs 1
  train "$source-s$SEED" pt2-dpr --init-from "$source-pre-s$SEED"
done
