#!/usr/bin/env bash
# The GPU side of the benchmarks, as one prepared command for a machine with CUDA GPUs.
#
#   BEIR_PEFT_DATA=/path/to/beir/datasets bash benchmarks/gpu_checks.sh [OUT_DIR]
#
# 1. encode_precision.py on cuda: fp32 / bf16 / fp16, stock sentence-transformers beside the package,
#    nDCG@10 of each dtype on SciFact test;
# 2. processes_throughput.py: 1 process against one per visible GPU (NCCL), training and encoding;
# 3. the faiss-gpu paths, when faiss sees a GPU (faiss-gpu replaces faiss-cpu: see docs/usage.md).
# Each writes JSON into OUT_DIR (default benchmarks/results/gpu); a step that fails stops the script.
set -euo pipefail
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpus.csv"
gpus=$(python -c "import torch; print(torch.cuda.device_count())")

python benchmarks/encode_precision.py --device cuda --num-docs 5000 --batch-size 256 --output "$out/encode_precision.json"

counts="1"
for n in 2 4 8; do [ "$n" -le "$gpus" ] && counts="$counts,$n"; done
python benchmarks/processes_throughput.py --processes "$counts" --steps 50 --global-batch 64 \
    --output "$out/processes_throughput.json"

if python -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)"; then
    python -m pytest -q tests/test_faiss_gpu_option.py 2>&1 | tee "$out/faiss_gpu_tests.txt"
    python -m beir_peft.cli evaluate --dataset scifact --search faiss-flat --faiss-gpu --output "$out/faiss_gpu_scifact.json" -q
else
    echo "faiss sees no GPU (faiss-cpu installed): the faiss-gpu checks were skipped" | tee "$out/faiss_gpu_tests.txt"
fi
echo "wrote $out"
