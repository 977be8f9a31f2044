#!/usr/bin/env bash
# test.sh - set everything up, build with warnings as errors, run the whole
# suite, then the same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/test.sh            # both builds
#   LLMLAB_NO_ASAN=1 scripts/test.sh   # skip the sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/setup.sh -DLLMLAB_WERROR=ON
echo "== test suite (release) =="
ctest --test-dir "${LLMLAB_BUILD_DIR:-build}" --output-on-failure -j"$jobs"

if [[ -z "${LLMLAB_NO_ASAN:-}" ]]; then
  echo "== test suite (ASan + UBSan) =="
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLLMLAB_SANITIZE=ON -DLLMLAB_WERROR=ON \
        -DLLMLAB_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi
