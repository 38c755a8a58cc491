#!/usr/bin/env bash
# The README's main job: sets up .venv (torch pinned first), then compresses a bundled image at
# three rates and prints the rate/quality table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/hyperproj demo --out out/demo "$@"
