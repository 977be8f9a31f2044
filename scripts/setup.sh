#!/usr/bin/env bash
# setup.sh - install what llmlab needs from Debian's packages (only what is
# missing) and build it into build/ (or $LLMLAB_BUILD_DIR).
#
#   scripts/setup.sh [extra cmake -D options...]
#
# Run as root on a fresh Debian machine, or as a user who already has the packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config git libcjson-dev libpcre2-dev libutf8proc-dev liblua5.4-dev lua5.4
          libhdf5-dev hdf5-tools libinih-dev libcriterion-dev gnuplot-nox)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${LLMLAB_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
