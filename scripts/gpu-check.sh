#!/usr/bin/env bash
# gpu-check.sh - the GPU check of the whole CUDA backend: run every CUDA test
# executable (test_cuda, test_cuda_quant, test_cuda_ops, test_cuda_attention,
# test_cuda_forward: those that exist), then `llmlab bench-forward` on the
# llama3-8b preset (built in memory, bf16) and `llmlab bench-cuda-quant`; keep
# the whole output in results/gpu/gpu-check-<date>-<commit>.txt (the benchmarks'
# figures in .h5 files beside it) and print a short summary last.
#
# Two ways to get the executables:
#   scripts/gpu-check.sh                  # build here with CUDA (build dir build-gpu), then run
#   scripts/gpu-check.sh --pack           # build here, pack the executables and the shared
#                                         # libraries they need (not glibc, not CUDA's) into
#                                         # .carry/gpu.tar.gz (about 15 MB); run nothing
# and on a GPU machine without the build dependencies (HDF5, Lua, Criterion),
# with .carry/gpu.tar.gz copied into the repository:
#   scripts/gpu-check.sh                  # unpacks .carry/gpu.tar.gz to a temp dir and uses it
#   LLMLAB_GPU_BIN=DIR scripts/gpu-check.sh   # executables from DIR, libraries from DIR/lib
#
# Options (environment):
#   LLMLAB_GPU_BUILD_DIR   build directory (default build-gpu)
#   LLMLAB_GPU_TIMEOUT     seconds each step may run (default 300)
#   LLMLAB_GPU_COPY_TO     also copy the record (.txt, .h5) into this directory
# Extra arguments go to bench-forward (e.g. --reps 5 --kv bf16).
#
# Exit status: 0 when every step succeeded.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

build=${LLMLAB_GPU_BUILD_DIR:-build-gpu}
step_timeout=${LLMLAB_GPU_TIMEOUT:-300}
jobs=$(nproc 2>/dev/null || echo 4)
carry=.carry/gpu
cuda_tests=()
for t in test_cuda test_cuda_quant test_cuda_ops test_cuda_attention test_cuda_forward; do
    [[ -f tests/$t.c ]] && cuda_tests+=("$t")
done

build_here() {
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLMLAB_CUDA=ON -DLLMLAB_WERROR=ON &&
        cmake --build "$build" -j"$jobs" --target llmlab "${cuda_tests[@]}"
}

# The shared libraries an executable needs that a GPU machine may lack: all but
# the C library family, the compiler runtime and CUDA's (the driver and the
# toolkit there provide those, matching the GPU).
needed_libs() {
    ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
        grep -Ev '/(ld-linux[^/]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnvidia[^/]*)\.so'
}

if [[ "${1:-}" == "--pack" ]]; then
    build_here || exit 1
    stage=$(mktemp -d) || exit 1
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/lib" .carry
    bins=("$build/llmlab")
    for t in "${cuda_tests[@]}"; do bins+=("$build/$t"); done
    cp "${bins[@]}" "$stage/"
    needed_libs "${bins[@]}" | while read -r lib; do cp -L "$lib" "$stage/lib/"; done
    {
        echo "commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(
            [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo -dirty)"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(nvcc --version 2>/dev/null | tail -n 1)"
    } >"$stage/BUILD_INFO"
    tar -C "$stage" -czf "$carry.tar.gz" . || exit 1
    echo "packed ${bins[*]##*/} and $(find "$stage/lib" -type f | wc -l) libraries into $carry.tar.gz" \
        "($(du -h "$carry.tar.gz" | cut -f1))"
    exit 0
fi

bin=${LLMLAB_GPU_BIN:-}
if [[ -z "$bin" && -f "$carry.tar.gz" ]]; then
    bin=$(mktemp -d) || exit 1
    trap 'rm -rf "$bin"' EXIT
    tar -C "$bin" -xzf "$carry.tar.gz" || exit 1
fi
stamp=$(date -u +%Y%m%d-%H%M%S)
if [[ -n "$bin" && -f "$bin/BUILD_INFO" ]]; then
    commit=$(awk '$1 == "commit" { print $2 }' "$bin/BUILD_INFO")
else
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit="$commit-dirty"; fi
fi
mkdir -p results/gpu
log="results/gpu/gpu-check-$stamp-$commit.txt"
h5_fwd="results/gpu/gpu-check-$stamp-$commit-forward.h5"
h5_quant="results/gpu/gpu-check-$stamp-$commit-quant.h5"
status=()

step() { # step NAME COMMAND...: runs a command (a program under the step timeout), records ok/FAILED
    local name=$1 rc
    shift
    echo "== $name: $*"
    if declare -F "$1" >/dev/null; then "$@"; else timeout --kill-after=10 "$step_timeout" "$@"; fi
    rc=$?
    if ((rc == 0)); then status+=("$name ok")
    elif ((rc == 124 || rc == 137)); then status+=("$name FAILED (timed out after ${step_timeout}s)")
    else status+=("$name FAILED ($rc)"); fi
}

# A test suite; on a machine whose GPU nvidia-smi sees, a skipped test (no
# device found by the program) fails the step.
# shellcheck disable=SC2317  # called through step
suite() {
    local out rc
    out=$(mktemp) || return 1
    timeout --kill-after=10 "$step_timeout" "$@" --verbose --jobs 1 >"$out" 2>&1
    rc=$?
    cat "$out"
    if ((rc == 0)) && ((gpu_seen)) && grep -q '^\[SKIP\]' "$out"; then
        echo "(tests were skipped although nvidia-smi sees a GPU)"
        rc=3
    fi
    rm -f "$out"
    return "$rc"
}

{
    echo "== gpu-check $stamp, commit $commit"
    gpu_seen=0
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
        --format=csv 2>&1 && gpu_seen=1 || echo "(nvidia-smi not available)"
    if [[ -n "$bin" ]]; then
        echo "== executables from $bin (no build)"
        cat "$bin/BUILD_INFO" 2>/dev/null
        cuda_lib=""
        for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do
            [[ -d $d ]] && cuda_lib="$cuda_lib:$d"
        done
        export LD_LIBRARY_PATH="$bin/lib$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        missing=$(ldd "$bin/llmlab" 2>&1 | grep 'not found')
        [[ -n "$missing" ]] && echo "missing libraries: $missing"
    else
        nvcc --version 2>&1 | tail -n 1
        bin=$build
        step build build_here
    fi
    for t in "${cuda_tests[@]}"; do
        if [[ -x "$bin/$t" ]]; then step "$t" suite "$bin/$t"
        else status+=("$t FAILED (no executable $bin/$t)"); fi
    done
    step bench-forward "$bin/llmlab" bench-forward --backend cuda --preset llama3-8b --dtype bf16 \
        --batch 1,8,32,64 --prefill 512,2048 --out "$h5_fwd" "$@"
    step bench-cuda-quant "$bin/llmlab" bench-cuda-quant --out "$h5_quant"
    echo
    echo "== steps"
    printf '  %s\n' "${status[@]}"
} 2>&1 | tee "$log"

# The short summary: the device, each test suite's tally, the forward benchmark's
# table, the quant benchmark's ceiling and target, and the steps.
{
    echo
    echo "== summary (full output: $log)"
    sed -n '2,3p' "$log"
    awk '/^== test_cuda/ { name = $2 } /Synthesis:/ { sub(":", "", name); print "  " name ": " $0 }' "$log"
    grep -E '^\[(FAIL|SKIP)' "$log" | head -n 20
    sed -n '/^bench-forward   /,/^batch 8 \/ batch 1/p' "$log"
    grep -E '^(copy bandwidth|target) ' "$log"
    sed -n '/^== steps/,$p' "$log" | tail -n +2
}
if [[ -n "${LLMLAB_GPU_COPY_TO:-}" ]]; then
    cp "$log" "$LLMLAB_GPU_COPY_TO/" 2>/dev/null
    for f in "$h5_fwd" "$h5_quant"; do [[ -f $f ]] && cp "$f" "$LLMLAB_GPU_COPY_TO/"; done
fi
grep -q 'FAILED' <(sed -n '/^== steps/,$p' "$log") && exit 1
exit 0
