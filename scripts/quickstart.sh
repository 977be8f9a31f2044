#!/usr/bin/env bash
# quickstart.sh - set everything up, then run the quickstart on the embedded
# default: the CPU backend and a small synthetic model generated on the spot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/run-quickstart.sh
