#!/usr/bin/env bash
# The whole GPU table of docs/benchmarks.md in one command: inference of random ModernBERT-base and
# BERT-base classifiers on claim-length inputs through every GPU path, then fine-tuning throughput, padded vs
# packed. Installs nothing; expects this package installed with torch (CUDA) in the active Python. About 5-8
# minutes on one H200 (the packed+compile warm-up compiles one graph per token budget, ~20 s each).
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # JSON in OUT_DIR (default outputs/benchmark), the tables printed last
set -euo pipefail
out_dir="${1:-outputs/benchmark}"
mkdir -p "$out_dir"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'benchmarks/gpu.sh needs a CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -m modernpatent_hf.cli bench --device cuda --models modernbert,bert \
    --paths naive,ours,packed,packed+compile --naive-batch-size 64 --num-samples 8192 --repeats 3 \
    --train-steps 30 --train-batch-size 32 --train-max-length 512 \
    --out "$out_dir/gpu.json" > "$out_dir/gpu.md"
python -m json.tool "$out_dir/gpu.json"
echo
echo "JSON: $out_dir/gpu.json; table: $out_dir/gpu.md"
cat "$out_dir/gpu.md"
