#!/usr/bin/env bash
# The DAM adaptation check on real all-MiniLM-L6-v2 weights, behind docs/results.md ("The adaptation
# check on real data"), at the DAM budget of ddr_cross_domain.sh (200 MLM steps, batch 16, 128 tokens).
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/ddr_dam_check.sh RUN_DIR
# Three DAMs, each ending with its check on 200 held-out passages: a source DAM on SciFact from the
# headless backbone (its start is an untrained head), a target DAM on the MS MARCO slice from it (the
# paper's sequential initialisation, at the paper's source-DAM rate), and the same target at a rate
# 200x higher (lr 1e-2), which the check must flag. Finished DAMs are skipped, their check read back.
set -euo pipefail
RUNS=${1:-runs}
mkdir -p "$RUNS"
cd "$RUNS"
DAM=(--steps 200 --batch-size 16 --max-seq-length 128 --checkpoint-every 50 --held-out-passages 200 -q)
beir-peft ddr dam --corpus scifact --init sentence-transformers/all-MiniLM-L6-v2 -o dam-scifact --lr 5e-5 "${DAM[@]}"
beir-peft ddr dam --corpus msmarco-dl19-5k --init dam-scifact -o dam-msmarco-from-scifact --lr 5e-5 "${DAM[@]}"
beir-peft ddr dam --corpus msmarco-dl19-5k --init dam-scifact -o dam-msmarco-lr1e-2 --lr 1e-2 "${DAM[@]}"
echo DAM-CHECK-DONE
