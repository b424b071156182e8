#!/usr/bin/env bash
# The head-to-head table of docs/results.md, produced by `beir-peft compare` from the models the other
# experiments trained. Usage: BEIR_PEFT_DATA=... bash docs/experiments/compare_reports.sh RUN_DIR
# RUN_DIR holds the folders and TREC runs of pt2_dpr_scifact.sh and the ColBERT runs; runs made there
# are adopted, anything missing is evaluated. The cache (TREC runs, ~15 MB per model) stays in
# RUN_DIR/compare; the report files are copied to docs/results/compare/.
set -euo pipefail
RUNS=$(cd "${1:-runs}" && pwd)
DOCS=$(cd "$(dirname "$0")/.." && pwd)/results/compare
MINILM=sentence-transformers/all-MiniLM-L6-v2
adopt() {  # adopt MODEL DATASET FILE: reuse FILE when it exists
  if [ -f "$3" ]; then echo "--adopt" "$1:$2=$3"; fi
}

# SciFact test: the zero-shot backbone, BM25 and every method trained on SciFact train
# shellcheck disable=SC2046
beir-peft compare -d scifact -q -o "$RUNS/compare/scifact" \
  -m zero-shot=$MINILM -m bm25=bm25 -m ft="$RUNS/ft" -m pt2-dpr="$RUNS/pt2-lr1e-3" \
  -m pt2-colbert="$RUNS/pt2-colbert" -m colbert-ft="$RUNS/colbert-ft" \
  $(adopt ft scifact "$RUNS/ft.scifact.run") $(adopt pt2-dpr scifact "$RUNS/pt2-lr1e-3.scifact.run") \
  $(adopt pt2-colbert scifact "$RUNS/pt2-colbert.scifact.run") $(adopt colbert-ft scifact "$RUNS/colbert-ft.scifact.run")
mkdir -p "$DOCS/scifact"
cp "$RUNS"/compare/scifact/report.{md,csv,json} "$RUNS"/compare/scifact/report_ndcg10.png "$DOCS/scifact/"
