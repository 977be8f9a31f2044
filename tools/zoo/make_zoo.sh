#!/usr/bin/env bash
# make_zoo.sh - regenerates the whole model zoo (models/zoo/) from files on this machine.
#
#   tools/zoo/make_zoo.sh [--threads N]
#
# Needs python3 with torch, transformers, tokenizers, safetensors and numpy.  Steps:
# corpus (gather_corpus.py) -> tokenizer and token ids (train_tokenizer.py) -> target
# and draft (train.py) -> Medusa heads for the target (train_medusa.py).  Everything
# is seeded; on a GPU (found automatically) training takes minutes, on a 2-core CPU
# about two hours.  The corpus and ids stay in zoo-data/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=(); [[ ${1:-} == --threads ]] && THREADS=(--threads "$2")
python3 tools/zoo/gather_corpus.py --out zoo-data
python3 tools/zoo/train_tokenizer.py --data zoo-data
python3 tools/zoo/train.py --role target --data zoo-data --out models/zoo "${THREADS[@]}"
python3 tools/zoo/train.py --role draft --data zoo-data --out models/zoo "${THREADS[@]}"
python3 tools/zoo/train_medusa.py --data zoo-data --model models/zoo/target "${THREADS[@]}"
cp zoo-data/manifest.tsv zoo-data/CORPUS.txt models/zoo/
python3 tools/zoo/write_cards.py --zoo models/zoo
