#!/usr/bin/env bash
# gpu-quant-check.sh - on a machine with an NVIDIA GPU: build with CUDA, run the
# CUDA quant kernel tests (test_cuda, test_cuda_quant) and `llmlab
# bench-cuda-quant`, keep the whole output in results/gpu/quant-<date>-<commit>.txt
# (and the benchmark's figures in the .h5 beside it), and print a short table last.
#
#   scripts/gpu-quant-check.sh                 # default shapes, M = 1, 8, 16, 32
#   scripts/gpu-quant-check.sh --reps 9        # extra options go to the benchmark
#   LLMLAB_GPU_BUILD_DIR=build-gpu2 scripts/gpu-quant-check.sh
#
# Exit status: 0 when the build, both test suites and the benchmark succeeded.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${LLMLAB_GPU_BUILD_DIR:-build-gpu}
jobs=$(nproc 2>/dev/null || echo 4)
stamp=$(date -u +%Y%m%d-%H%M%S)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit="$commit-dirty"; fi
mkdir -p results/gpu
log="results/gpu/quant-$stamp-$commit.txt"
h5="results/gpu/quant-$stamp-$commit.h5"
status=()

step() { # step NAME COMMAND...: runs a command, records ok/FAILED under NAME
    local name=$1
    shift
    echo "== $name: $*"
    if "$@"; then status+=("$name ok"); else status+=("$name FAILED ($?)"); fi
}

{
    echo "== gpu-quant-check $stamp, commit $commit"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
        --format=csv 2>&1 || echo "(nvidia-smi not available)"
    nvcc --version 2>&1 | tail -n 1
    step configure cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLMLAB_CUDA=ON -DLLMLAB_WERROR=ON
    step build cmake --build "$build" -j"$jobs" --target llmlab test_cuda test_cuda_quant
    step test_cuda "$build/test_cuda" --verbose --jobs 1
    step test_cuda_quant "$build/test_cuda_quant" --verbose --jobs 1
    step bench "$build/llmlab" bench-cuda-quant --out "$h5" "$@"
    echo
    echo "== steps"
    printf '  %s\n' "${status[@]}"
} 2>&1 | tee "$log"

# The short table: decode (M = 1) rows of every format (fused kernels) and the
# issue's target.
{
    echo
    echo "== summary (full output: $log)"
    grep -E '^(device|copy bandwidth) ' "$log"
    awk '$1 == "shape" && $2 == "M" { hdr = $0 }
         $2 == "1" && ($4 == "gemv" || $4 == "mma") { if (hdr != "") { print hdr; hdr = "" } print }' "$log"
    grep -E '^target ' "$log"
    grep -E '^\[(FAIL|SKIP)|Synthesis' "$log"
    sed -n '/^== steps/,$p' "$log" | tail -n +2
}
grep -q 'FAILED' <(sed -n '/^== steps/,$p' "$log") && exit 1
exit 0
