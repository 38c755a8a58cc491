#!/usr/bin/env bash
# The README's test command: sets up .venv (torch pinned first) and runs the whole test suite,
# the docstring examples, and the examples/ scripts at small settings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# Debian test data (meshes, audio) when this machine can fetch it; tests skip with a reason otherwise.
if [ ! -d .data/meshes ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/fetch_test_data.sh || echo "note: Debian test data unavailable; mesh/audio tests will skip"
fi
export HYPERPROJ_DATA="$PWD/.data"
.venv/bin/python -m pytest -n 2 --dist loadfile -q tests hyperproj --doctest-modules "$@"
