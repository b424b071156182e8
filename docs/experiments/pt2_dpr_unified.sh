#!/usr/bin/env bash
# DPTDR's unified negative mining for PT2-DPR on SciFact (issue: quality, lever 1): a second round
# trained from the backbone, as the first, with one hard negative per query drawn from the first
# round's top 30 and BM25's, interleaved, false negatives guarded (margin 0), evaluated on SciFact
# test and the MS MARCO slice. ROUND1 is a finished first round (e.g. pt2_dpr_seeds.sh's
# pt2-nodrop-s1); its in-batch-only result is the levers-off reference.
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/pt2_dpr_unified.sh RUN_DIR SEED ROUND1 [train options...]
set -euo pipefail
RUNS=${1:-runs}; SEED=$2; ROUND1=$(realpath "$3"); shift 3
EXTRA=("$@")
mkdir -p "$RUNS"
cd "$RUNS"
name="unified-s$SEED"
[ -f "$name/config.json" ] || beir-peft train pt2-dpr --dataset scifact --split train --output "$name" -q --resume \
  --seed "$SEED" --hard-negatives 1 --negatives unified --negatives-from "$ROUND1" "${EXTRA[@]}"
for data in scifact msmarco-dl19-5k; do
  [ -f "$name.$data.json" ] || beir-peft evaluate --model "$name" --dataset "$data" --split test -q -o "$name.$data.json"
done
