#!/usr/bin/env bash
# The DDR cross-domain experiment behind docs/results.md (issue: DDR), on one CPU-sized budget.
# Usage: BEIR_PEFT_DATA=/path/to/beir/datasets bash docs/experiments/ddr_cross_domain.sh RUN_DIR
# Source -> target: scifact -> msmarco-dl19-5k, and the reverse. The MS MARCO slice has only a test
# split, so in the reverse direction its 43 judged test queries are the source's training data (they
# are never evaluated on). Finished steps are skipped, so the script resumes.
# Needs RUN_DIR/ft (full fine-tuning on SciFact train, from pt2_dpr_scifact.sh: 3 epochs, 84 steps,
# no hard negatives) for DR scifact->msmarco.
set -euo pipefail
RUNS=${1:-runs}
mkdir -p "$RUNS"
cd "$RUNS"
DAM=(--steps 200 --batch-size 16 --lr 5e-5 --max-seq-length 128 --checkpoint-every 50 -q)
# every supervised model (REM and DR) gets the same budget: 50 steps of 32 queries with 1 hard negative
REM=(--epochs 2 --max-steps 50 --batch-size 32 --lr 5e-4 --hard-negatives 1 -q)

evaluate() {  # evaluate MODEL NAME DATASET
  [ -f "$2.$3.json" ] || beir-peft evaluate --model "$1" --dataset "$3" -q -o "$2.$3.json" --run-file "$2.$3.run"
}
dam() {  # dam NAME CORPUS INIT
  [ -f "$1/dam.json" ] || beir-peft ddr dam --corpus "$2" --init "$3" -o "$1" "${DAM[@]}"
}

# domain modules: each corpus from the backbone, and each target from the other's DAM (sequential init)
dam dam-scifact scifact sentence-transformers/all-MiniLM-L6-v2
dam dam-msmarco msmarco-dl19-5k sentence-transformers/all-MiniLM-L6-v2
dam dam-msmarco-from-scifact msmarco-dl19-5k dam-scifact
dam dam-scifact-from-msmarco scifact dam-msmarco

# relevance modules, each trained once on its frozen source DAM
[ -f rem-scifact/config.json ] || beir-peft ddr rem -d scifact --split train --dam dam-scifact -o rem-scifact --resume "${REM[@]}"
[ -f rem-msmarco/config.json ] || beir-peft ddr rem -d msmarco-dl19-5k --split test --dam dam-msmarco -o rem-msmarco --resume "${REM[@]}"
# DR in the reverse direction: full fine-tuning on the MS MARCO slice (same budget as the REM)
[ -f dr-msmarco/config.json ] || beir-peft train ft -d msmarco-dl19-5k --split test -o dr-msmarco --epochs 2 --max-steps 50 --hard-negatives 1 --resume -q

# assembled retrievers: the REM on the target DAM (with and without sequential initialisation)
[ -f ddr-scifact-to-msmarco/config.json ] || beir-peft ddr assemble --dam dam-msmarco-from-scifact --rem rem-scifact -o ddr-scifact-to-msmarco
[ -f ddr-noseq-scifact-to-msmarco/config.json ] || beir-peft ddr assemble --dam dam-msmarco --rem rem-scifact -o ddr-noseq-scifact-to-msmarco
[ -f ddr-msmarco-to-scifact/config.json ] || beir-peft ddr assemble --dam dam-scifact-from-msmarco --rem rem-msmarco -o ddr-msmarco-to-scifact
[ -f ddr-noseq-msmarco-to-scifact/config.json ] || beir-peft ddr assemble --dam dam-scifact --rem rem-msmarco -o ddr-noseq-msmarco-to-scifact

# scifact -> msmarco (target test split: msmarco-dl19-5k)
evaluate sentence-transformers/all-MiniLM-L6-v2 zero-shot msmarco-dl19-5k
evaluate ft dr-scifact msmarco-dl19-5k
evaluate rem-scifact rem-scifact msmarco-dl19-5k
evaluate ddr-scifact-to-msmarco ddr-scifact-to-msmarco msmarco-dl19-5k
evaluate ddr-noseq-scifact-to-msmarco ddr-noseq-scifact-to-msmarco msmarco-dl19-5k
# msmarco -> scifact (target test split: scifact)
evaluate sentence-transformers/all-MiniLM-L6-v2 zero-shot scifact
evaluate dr-msmarco dr-msmarco scifact
evaluate rem-msmarco rem-msmarco scifact
evaluate ddr-msmarco-to-scifact ddr-msmarco-to-scifact scifact
evaluate ddr-noseq-msmarco-to-scifact ddr-noseq-msmarco-to-scifact scifact
echo DDR-DONE
