#!/usr/bin/env bash
# run-quickstart.sh - the quickstart itself (assumes build/ exists): synthesizes a
# small model, generates, runs a workload through the plugin engine and writes
# results/quickstart.h5 (experiments/quickstart.lua).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${LLMLAB_BUILD_DIR:-build}/llmlab" run experiments/quickstart.lua "$@"
