#!/usr/bin/env bash
# run-quickstart.sh - the quickstart itself (assumes build/ exists).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LLMLAB_BUILD_DIR:-build}/llmlab
MODEL=models-synth/tiny
"$BIN" synth "$MODEL" --preset tiny --seed 1
echo "== greedy continuation (token ids) =="
"$BIN" generate -m "$MODEL" -p "Hello, llmlab" -n 24 --ids --no-eos
echo "== sampled continuation (temperature 0.8, top-p 0.9, seed 7) =="
"$BIN" generate -m "$MODEL" -p "Hello, llmlab" -n 24 --temp 0.8 --top-p 0.9 --seed 7 --ids --no-eos
