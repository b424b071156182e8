#!/usr/bin/env bash
# The head-to-head tables of docs/results.md, produced by `beir-peft compare` from the models the other
# experiments trained. Usage: BEIR_PEFT_DATA=... bash docs/experiments/compare_reports.sh RUN_DIR OUT_DIR
# RUN_DIR holds the folders and TREC runs of pt2_dpr_scifact.sh, the ColBERT runs and ddr/ (from
# ddr_cross_domain.sh); runs already made there are adopted, anything missing is evaluated.
set -euo pipefail
RUNS=$(cd "${1:-runs}" && pwd)
OUT=${2:-docs/results/compare}
MINILM=sentence-transformers/all-MiniLM-L6-v2
adopt() {  # adopt MODEL DATASET FILE: reuse FILE when it exists
  [ -f "$3" ] && echo "--adopt" "$1:$2=$3" || true
}

# SciFact test: every method trained on SciFact train, the zero-shot backbone and BM25
beir-peft compare -d scifact -q -o "$OUT/scifact" \
  -m zero-shot=$MINILM -m bm25=bm25 -m ft="$RUNS/ft" -m pt2-dpr="$RUNS/pt2-lr1e-3" \
  -m pt2-colbert="$RUNS/pt2-colbert" -m colbert-ft="$RUNS/colbert-ft" \
  $(adopt zero-shot scifact "$RUNS/ddr/zero-shot.scifact.run") $(adopt ft scifact "$RUNS/ft.scifact.run") \
  $(adopt pt2-dpr scifact "$RUNS/pt2-lr1e-3.scifact.run") $(adopt pt2-colbert scifact "$RUNS/pt2-colbert.scifact.run") \
  $(adopt colbert-ft scifact "$RUNS/colbert-ft.scifact.run")

# DDR, SciFact -> MS MARCO slice (target test split)
D="$RUNS/ddr"
beir-peft compare -d msmarco-dl19-5k -q -o "$OUT/ddr-scifact-to-msmarco" \
  -m zero-shot=$MINILM -m dr=$D/ft -m rem-source-dam=$D/rem-scifact -m ddr=$D/ddr-scifact-to-msmarco \
  -m ddr-no-sequential-init=$D/ddr-noseq-scifact-to-msmarco \
  $(adopt zero-shot msmarco-dl19-5k "$D/zero-shot.msmarco-dl19-5k.run") $(adopt dr msmarco-dl19-5k "$D/dr-scifact.msmarco-dl19-5k.run") \
  $(adopt rem-source-dam msmarco-dl19-5k "$D/rem-scifact.msmarco-dl19-5k.run") \
  $(adopt ddr msmarco-dl19-5k "$D/ddr-scifact-to-msmarco.msmarco-dl19-5k.run") \
  $(adopt ddr-no-sequential-init msmarco-dl19-5k "$D/ddr-noseq-scifact-to-msmarco.msmarco-dl19-5k.run")

# DDR, MS MARCO slice -> SciFact (target test split)
beir-peft compare -d scifact -q -o "$OUT/ddr-msmarco-to-scifact" \
  -m zero-shot=$MINILM -m dr=$D/dr-msmarco -m rem-source-dam=$D/rem-msmarco -m ddr=$D/ddr-msmarco-to-scifact \
  -m ddr-no-sequential-init=$D/ddr-noseq-msmarco-to-scifact \
  $(adopt zero-shot scifact "$D/zero-shot.scifact.run") $(adopt dr scifact "$D/dr-msmarco.scifact.run") \
  $(adopt rem-source-dam scifact "$D/rem-msmarco.scifact.run") $(adopt ddr scifact "$D/ddr-msmarco-to-scifact.scifact.run") \
  $(adopt ddr-no-sequential-init scifact "$D/ddr-noseq-msmarco-to-scifact.scifact.run")
