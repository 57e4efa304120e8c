#!/usr/bin/env bash
# The GPU table of docs/benchmarks.md in one command that keeps whatever it measured. Random ModernBERT-base and
# BERT-base classifiers, claim-length inputs: a smoke step first (versions; per model one packed batch, eager and
# compiled, against padded logits; which attention ran and the graphs compiled), then per model inference through
# naive (batch 64, input order: the seed's setting), ours, packed and packed+compile, and fine-tuning throughput,
# padded vs packed. Each step is its own python3 process under coreutils timeout, so a hang costs one step; a path
# that raises is a row with its error (modernpatent bench). Everything lands in OUT_DIR: gpu.log (all output),
# smoke.json, bench-modernbert.json, bench-bert.json, gpu.json (merged) and gpu.md; the tables print last.
# Needs python3 with torch (CUDA) and transformers, and this checkout; no `datasets`, no network, installs nothing.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default: $OUT when set, else outputs/gpu
#
# About 5 minutes on one H100 by estimate, 6.2 if the compiles are as much slower as the GPU work (docs/benchmarks.md,
# "GPU": from the H200 probe's rates and compile times); at most about 9 when every step hits its timeout (120 + 240
# + 150 s, each plus 10 s to stop). A dry run on a CPU, to check this script (tiny models, seconds per step):
#   GPU_SH_DEVICE=cpu GPU_SH_ARGS="--tiny --num-samples 8 --repeats 1 --train-steps 1 --paths naive,ours,packed" \
#   GPU_SH_SMOKE_ARGS="--tiny --texts 6 --variants padded,packed" bash benchmarks/gpu.sh /tmp/gpu-dry-run
set -uo pipefail # no -e: a failed step is recorded, and the next one runs
out_dir="${1:-${OUT:-outputs/gpu}}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)" # the caller's folder, before moving to the checkout
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# An earlier run's files must not pass for this run's: gpu_table.py merges whatever bench JSON it finds.
rm -f "$out_dir"/{smoke,bench-modernbert,bench-bert,gpu}.json "$out_dir/gpu.md"
log="$out_dir/gpu.log"
: >"$log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
device="${GPU_SH_DEVICE:-cuda}"
read -r -a bench_extra <<<"${GPU_SH_ARGS:-}"  # later options win: these override the defaults below
read -r -a smoke_extra <<<"${GPU_SH_SMOKE_ARGS:-}"
smoke_timeout=120
declare -A bench_timeout=([modernbert]=240 [bert]=150)

note() { echo "== $*" | tee -a "$log"; }

note "gpu.sh in $PWD, output in $out_dir, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

note "smoke step (timeout ${smoke_timeout} s)"
started=$SECONDS
timeout -k 10 "$smoke_timeout" python3 benchmarks/gpu_smoke.py --device "$device" --out "$out_dir" \
    "${smoke_extra[@]}" 2>>"$log" | tee -a "$log"
note "smoke step: exit status ${PIPESTATUS[0]}, $((SECONDS - started)) s"

if [[ $device == cuda* ]] && ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >>"$log" 2>&1; then
    note "no CUDA device in this python3: the bench steps are left out"
    exit 1
fi

runs=()
timeouts=()
for model in modernbert bert; do
    note "bench $model (timeout ${bench_timeout[$model]} s)"
    started=$SECONDS
    timeout -k 10 "${bench_timeout[$model]}" python3 -m modernpatent_hf.cli bench --device "$device" --models "$model" \
        --paths naive,ours,packed,packed+compile --naive-batch-size 64 --num-samples 4096 --repeats 3 \
        --train-steps 20 --train-batch-size 32 --train-max-length 512 \
        --out "$out_dir/bench-$model.json" "${bench_extra[@]}" >>"$log" 2>&1
    status=$?
    note "bench $model: exit status $status, $((SECONDS - started)) s"
    runs+=(--run "$model=$status")
    timeouts+=(--timeout "$model=${bench_timeout[$model]}")
done

note "tables (JSON: $out_dir/gpu.json, table: $out_dir/gpu.md, log: $log)"
python3 benchmarks/gpu_table.py "$out_dir" "${runs[@]}" "${timeouts[@]}" 2>&1 | tee -a "$log"
